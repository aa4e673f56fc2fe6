"""The Pulumi stack outputs the hosts layer reads (``pulumi stack output --json``), validated.

The program (``infra/cloud/program.py``) exports more keys; only these are read here. A bad file
fails with one line per problem: file, key path, what was expected, what was found.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.model import StackError
from infra.model.errors import from_validation

_NAME = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$"


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OutBastion(_Out):
    name: str = Field(pattern=_NAME)
    address: IPv4Address = Field(description="public (floating) address operators reach")
    private_address: IPv4Address


class OutNode(_Out):
    name: str = Field(pattern=_NAME)
    address: IPv4Address
    role: Literal["control-plane", "worker"]


class OutKubernetes(_Out):
    api_endpoint: str
    version: str = Field(pattern=r"^1\.[0-9]{2}\.[0-9]+$")
    pod_cidr: IPv4Network
    service_cidr: IPv4Network

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            ok = parts.scheme == "https" and bool(parts.hostname) and parts.port is not None
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("expected 'https://HOST:PORT' (the internal load balancer of the Kubernetes API)")
        return value


class Outputs(_Out):
    stack: str
    bastion: OutBastion
    nodes: dict[str, list[OutNode]] = Field(min_length=1)
    kubernetes: OutKubernetes
    backup_containers: dict[str, str] = Field(default_factory=dict)


def parse_outputs(data: Any, source: str, stack: str) -> Outputs:
    """Validate outputs against the shape and against the stack they claim to describe."""
    if isinstance(data, dict) and any(isinstance(v, str) and v == "[secret]" for v in data.values()):
        raise StackError([f"{source}: secret outputs are masked: run 'pulumi stack output --json --show-secrets'"])
    try:
        out = Outputs.model_validate(data)
    except ValidationError as exc:
        raise from_validation(source, exc) from None
    if out.stack != stack:
        raise StackError([f"{source}: stack: outputs are of stack {out.stack!r}, not {stack!r} (wrong file?)"])
    names: dict[str, str] = {out.bastion.name: "bastion"}
    problems = []
    for pool, hosts in out.nodes.items():
        for i, host in enumerate(hosts):
            where = f"nodes.{pool}[{i}]"
            if host.name in names:
                problems.append(f"{source}: {where}.name: {host.name!r} repeats {names[host.name]}")
            names[host.name] = where
    if problems:
        raise StackError(problems)
    return out


def load_outputs(path: Path, stack: str) -> Outputs:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackError([f"{path}: cannot read Pulumi outputs ({exc.strerror})"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{path}: line {exc.lineno}: not JSON ({exc.msg}); expected 'pulumi stack output --json'"
        raise StackError([msg]) from None
    return parse_outputs(data, str(path), stack)


def outputs_from_pulumi(stack: str) -> Outputs:
    """Ask the Pulumi CLI (``pulumi stack output --json``); a missing CLI is a one-line error."""
    import shutil
    import subprocess

    from infra.model.loader import REPO_ROOT

    if shutil.which("pulumi") is None:
        raise StackError([
            f"stack {stack!r}: the Pulumi CLI is not installed: install it, or save "
            f"'pulumi stack output --json -s {stack}' to a file and pass --outputs FILE"
        ])
    proc = subprocess.run(
        ["pulumi", "stack", "output", "--json", "--show-secrets", "-s", stack],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise StackError([f"stack {stack!r}: 'pulumi stack output' failed: {last}"])
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise StackError([f"stack {stack!r}: 'pulumi stack output --json' printed no JSON ({exc.msg})"]) from None
    return parse_outputs(data, f"pulumi stack output -s {stack}", stack)
