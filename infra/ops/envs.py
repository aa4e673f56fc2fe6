"""Ephemeral environments: a stack derived from a base stack, with a TTL, that never leaks.

An environment is a stack file in ``<state>/envs/`` (so every command takes it with ``-s NAME``) plus a
small record (creator's base, TTL, creation time). Teardown is ordered and idempotent: workloads,
volumes, secrets, backups, state, and the stack file last — a destroy interrupted at any point is
finished by running it again.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from infra.contract import load_components
from infra.model import StackError, StackModel, load_stack, state_root
from infra.model.loader import config_values, list_stacks, stack_file

NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
OFFSET_STEP, OFFSET_MIN, OFFSET_MAX = 100, 2000, 40000
_TTL = re.compile(r"^([1-9][0-9]*)([mhd])$")


class EnvError(RuntimeError):
    pass


@dataclass
class EnvRecord:
    name: str
    target: str
    base: str
    created: str
    ttl_s: int

    @property
    def expires(self) -> datetime:
        return datetime.fromisoformat(self.created) + timedelta(seconds=self.ttl_s)

    def ttl_left_s(self, now: datetime | None = None) -> int:
        return int((self.expires - (now or datetime.now(UTC))).total_seconds())


def envs_dir() -> Path:
    return state_root() / "envs"


def parse_ttl(text: str) -> int:
    m = _TTL.match(text)
    if not m:
        raise EnvError(f"--ttl {text!r}: expected a duration like 90m, 2h or 1d")
    return int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _record_path(name: str) -> Path:
    return envs_dir() / f"{name}.env.json"


def records() -> list[EnvRecord]:
    return sorted((EnvRecord(**json.loads(p.read_text())) for p in envs_dir().glob("*.env.json")),
                  key=lambda r: (r.created, r.name))


def record(name: str) -> EnvRecord:
    path = _record_path(name)
    if not path.exists():
        known = ", ".join(r.name for r in records()) or "none"
        raise EnvError(f"environment {name!r} does not exist (environments: {known})")
    return EnvRecord(**json.loads(path.read_text()))


def _ports_free(offset: int) -> bool:
    for spec in load_components().values():
        for port in spec.ports.values():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port + offset))
                except OSError:
                    return False
    return True


def free_offset() -> int:
    """A port offset no known stack uses and whose ports are free on this host."""
    used = set()
    for name in list_stacks():
        local = config_values(stack_file(name)).get("local") or {}
        used.add(int(local.get("portOffset", 0)))
    for offset in range(OFFSET_MIN, OFFSET_MAX + 1, OFFSET_STEP):
        if offset not in used and _ports_free(offset):
            return offset
    raise EnvError("no free port offset left for a local environment: destroy some (`govcloud env list`)")


def create(name: str, base: str, ttl: str, target: str | None = None) -> EnvRecord:
    """Write the environment's stack file and record; bringing it up is ``govcloud up -s NAME``."""
    if not NAME.match(name):
        raise EnvError(f"environment name {name!r}: expected lowercase letters, digits and '-', 2-31 characters "
                       "starting with a letter (e.g. ci-12345)")
    if name in list_stacks():
        raise EnvError(f"environment {name!r} already exists: pick another name or `govcloud env destroy {name}`")
    ttl_s = parse_ttl(ttl)
    values: dict[str, Any] = dict(config_values(stack_file(base)))
    values["target"] = target or values.get("target", "local")
    if values["target"] == "openstack":
        from infra.ops.pulumi_stack import require_cli

        require_cli()  # up front: nothing is written when the cloud path cannot run
    now = datetime.now(UTC).replace(microsecond=0)
    values["labels"] = {**(values.get("labels") or {}), "govcloud.env": name,
                        "govcloud.expires": (now + timedelta(seconds=ttl_s)).strftime("%Y%m%dT%H%M%SZ")}
    if values["target"] == "local":
        values["local"] = {**(values.get("local") or {}), "portOffset": free_offset()}
    envs_dir().mkdir(parents=True, exist_ok=True)
    path = envs_dir() / f"Pulumi.{name}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"# ephemeral environment {name} from stack {base}, created {now.isoformat()}\n"
                   + yaml.safe_dump({"config": {f"govcloud:{k}": v for k, v in values.items()}}, sort_keys=False))
    try:
        from infra.model.loader import parse_stack

        parse_stack(name, tmp)  # refuse before anything exists
    except StackError:
        tmp.unlink()
        raise
    rec = EnvRecord(name, values["target"], base, now.isoformat(), ttl_s)
    _record_path(name).write_text(json.dumps(asdict(rec)))
    tmp.replace(path)
    return rec


def destroy(name: str, say: Any) -> list[str]:
    """Ordered teardown of one environment; safe to re-run after any interruption."""
    rec = record(name)
    model = load_stack(name)
    removed: list[str] = []
    if rec.target == "local":
        from infra.runtime.local import LocalRuntime

        removed += LocalRuntime(model).down(say, volumes=True)
        from infra.ops.repository import backup_root

        repo = backup_root() / name
        if repo.exists():
            shutil.rmtree(repo)
            removed.append(f"backups/{name}")
    else:
        from infra.ops.pulumi_stack import destroy_cloud_stack

        removed += destroy_cloud_stack(model, say)
    from infra.ops.repository import uses_swift

    if rec.target != "local" or uses_swift(model):
        removed += _sweep_cloud(model, say)
    from infra.state import StackState

    state = StackState(name)
    if state.dir.exists():
        shutil.rmtree(state.dir)
        removed.append(f"state/{name}")
    stack_file(name).unlink()  # last: until here, `govcloud env destroy NAME` can finish the job
    _record_path(name).unlink(missing_ok=True)
    return removed


def _sweep_cloud(model: StackModel, say: Any) -> list[str]:
    """What Pulumi did not delete (a non-empty backup container, resources of a lost state) goes by its tags."""
    from infra.ops.openstack_api import connect
    from infra.ops.sweep import sweep

    report = sweep(connect(model), model.name, say, other_stacks=list_stacks())
    if report.failed:
        left = "; ".join(f"{f.kind} {f.name}: {why}" for f, why in report.failed.items())
        raise EnvError(f"environment {model.name}: still on the cloud: {left} "
                       f"(run 'govcloud env destroy {model.name}' again to retry)")
    return [f"cloud/{f.kind}/{f.name}" for f in report.deleted]


def expired(now: datetime | None = None) -> list[EnvRecord]:
    return [r for r in records() if r.ttl_left_s(now) <= 0]


def leftovers(name: str) -> list[str]:
    """Anything of the environment still on this host (podman objects, state, backups)."""
    from infra.ops.repository import backup_root
    from infra.runtime.podman import podman

    found = []
    for kind, args, fmt in (("pod", ["pod", "ps"], "{{.Name}}"), ("container", ["ps", "-a"], "{{.Names}}"),
                            ("volume", ["volume", "ls"], "{{.Name}}"), ("secret", ["secret", "ls", "--noheading"],
                                                                         "{{.Name}}")):
        out = podman(*args, "--format", fmt).stdout.decode().split()
        found += [f"{kind}/{n}" for n in out
                  if n.startswith(f"{name}-") and n[len(name) + 1:].split("-")[0] in load_components()]
    for path in (state_root() / name, backup_root() / name):
        if path.exists():
            found.append(str(path))
    return found
