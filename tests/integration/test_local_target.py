"""The local target end to end on podman: up, idempotent re-up, data survives down/up, clean teardown."""

from __future__ import annotations

import subprocess

import pytest

from infra.manifests.workloads import stack_components
from infra.model import load_stack
from infra.runtime.local import LocalRuntime
from tests.integration.conftest import govcloud

pytestmark = pytest.mark.podman


def podman_names(kind: str, stack: str) -> list[str]:
    fmt = "{{.Name}}" if kind != "ps" else "{{.Names}}"
    args = {"pod": ["pod", "ps"], "volume": ["volume", "ls"], "secret": ["secret", "ls", "--noheading"],
            "ps": ["ps", "-a"]}[kind]
    out = subprocess.run(["podman", *args, "--format", fmt], capture_output=True, text=True, check=True).stdout
    return [n for n in out.split() if n.startswith(f"{stack}-")]


def psql(rt: LocalRuntime, sql: str) -> str:
    port = str(rt.model.local.port_offset + 18010)
    res = rt.exec("postgres", ["psql", "-h", "/tmp", "-p", port, "-U", "postgres", "-tAc", sql])
    assert res.returncode == 0, res.stderr
    return res.stdout.decode().strip()


def test_up_is_idempotent_keeps_data_and_tears_down_cleanly(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory("it", 3100)
    first = govcloud("up", "-s", stack)
    components = [s.name for s in stack_components(load_stack(stack))]
    for name in components:
        assert f"{name}: ready" in first.stderr

    status = govcloud("status", "-s", stack, "--json")
    assert '"ready": false' not in status.stdout

    second = govcloud("up", "-s", stack)
    for name in components:
        assert f"{name}: unchanged" in second.stderr
    assert "starting" not in second.stderr

    rt = LocalRuntime(load_stack(stack))
    psql(rt, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    govcloud("down", "-s", stack)
    assert podman_names("pod", stack) == []
    govcloud("up", "-s", stack)
    assert psql(rt, "SELECT v FROM kept") == "42"

    govcloud("down", "-s", stack, "--volumes")
    for kind in ("pod", "ps", "volume", "secret"):
        assert podman_names(kind, stack) == [], kind


def test_a_failing_component_reports_why(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory("it", 3200, components={"postgres": {"resources": {"memory": "1Mi"}}})
    proc = govcloud("up", "-s", stack, check=False)
    assert proc.returncode == 2
    assert "postgres did not become ready" in proc.stderr
