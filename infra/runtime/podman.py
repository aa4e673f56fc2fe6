"""Thin, typed wrapper over the podman CLI (podman 4.3 on Debian 12) with one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import IO, Any


class PodmanError(RuntimeError):
    """A podman command failed; the message is one line: the command and podman's last words."""


def podman(
    *args: str,
    check: bool = True,
    stdin: IO[bytes] | int | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("podman") is None:
        raise PodmanError("podman is not installed: run scripts/bootstrap-host.sh (or `make up`)")
    proc = subprocess.run(
        ["podman", *args], stdin=stdin, input=input, capture_output=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit {proc.returncode}"
        raise PodmanError(f"podman {' '.join(args[:3])}: {last}")
    return proc


def podman_json(*args: str) -> Any:
    out = podman(*args).stdout.decode().strip()
    return json.loads(out) if out else []


def secret_names() -> set[str]:
    # `podman secret ls --format json` is broken in 4.3; the Go template works
    out = podman("secret", "ls", "--noheading", "--format", "{{.Name}}").stdout.decode()
    return {line.strip() for line in out.splitlines() if line.strip()}


def volume_names(label: str) -> set[str]:
    out = podman("volume", "ls", "--filter", f"label={label}", "--format", "{{.Name}}").stdout.decode()
    return {line.strip() for line in out.splitlines() if line.strip()}
