"""Readiness probing from the host: podman ignores readinessProbe, so the toolkit polls itself."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx


def probe_http(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}".split("\n")[0]
    if resp.status_code == 200:
        return True, ""
    try:
        reasons = resp.json().get("reasons") or resp.json()
    except ValueError:
        reasons = resp.text[:200]
    return False, f"HTTP {resp.status_code}: {reasons}"


def probe_tcp(host: str, port: int, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"tcp {host}:{port}: {exc.strerror or exc}"


def wait_until(check: Callable[[], tuple[bool, str]], deadline_s: float, alive: Callable[[], str | None],
               interval: float = 0.25) -> tuple[bool, str]:
    """Poll ``check`` until it passes, the deadline passes, or ``alive`` reports the workload died."""
    end = time.monotonic() + deadline_s
    reason = "not checked"
    while time.monotonic() < end:
        ok, reason = check()
        if ok:
            return True, ""
        dead = alive()
        if dead:
            return False, dead
        time.sleep(interval)
    return False, f"not ready after {deadline_s:.0f}s: {reason}"
