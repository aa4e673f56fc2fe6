"""The runtime interface: operations (health, backup, restore, env) talk to this, never to podman or
Kubernetes directly. Two implementations: ``local`` (podman) and ``kubernetes`` (the API client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

Progress = Callable[[str], None]


@dataclass
class ComponentStatus:
    component: str
    state: str  # running | stopped | missing | degraded
    ready: bool
    reason: str = ""
    endpoint: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class Runtime(Protocol):
    def up(self, say: Progress) -> list[ComponentStatus]: ...

    def status(self) -> list[ComponentStatus]: ...

    def endpoint(self, component: str, port: str = "http") -> str: ...

    def exec(self, component: str, command: list[str], stdin: IO[bytes] | None = None,
             stdout: IO[bytes] | None = None) -> ExecResult: ...

    def scale(self, component: str, running: bool) -> None: ...

    def down(self, say: Progress, volumes: bool = False) -> list[str]: ...
