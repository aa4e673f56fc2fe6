"""Backups on the local target: health layers, backup → lose data → restore, and a restore that cannot
verify is rolled back leaving the live data as it was."""

from __future__ import annotations

import json
import subprocess
import tempfile

import pytest

from infra.model import load_stack
from infra.ops.backup import Item, tags
from infra.ops.repository import open_repository
from infra.runtime.local import LocalRuntime, pod_name
from tests.integration.conftest import govcloud

pytestmark = pytest.mark.podman

ONLY_PORTAL = {name: {"enabled": False} for name in ("bodysystems", "nats", "ca", "switch", "bus", "payment")}


def sql(rt: LocalRuntime, query: str, db: str = "portal") -> str:
    port = str(rt.model.local.port_offset + 18010)
    res = rt.exec("postgres", ["psql", "-h", "/tmp", "-p", port, "-U", "postgres", "-d", db, "-tAc", query])
    assert res.returncode == 0, res.stderr
    return res.stdout.decode().strip()


def health(stack: str) -> tuple[int, dict]:
    proc = govcloud("health", "-s", stack, "--json", check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_health_backup_restore_and_rollback(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory("it", 3300, components=ONLY_PORTAL)
    govcloud("up", "-s", stack)
    rt = LocalRuntime(load_stack(stack))

    code, report = health(stack)
    assert code == 1 and report["status"] == "degraded"  # never backed up
    assert {c["name"] for c in report["checks"] if c["status"] != "ok"} == {"portal/database", "govcloud/state"}

    govcloud("backup", "-s", stack)
    code, report = health(stack)
    assert code == 0, report
    services = sql(rt, "SELECT count(*) FROM services")
    assert int(services) == 4246

    # lose data, restore, and the very same facts come back
    sql(rt, "DELETE FROM feedback; DELETE FROM services WHERE status = 'draft'")
    assert sql(rt, "SELECT count(*) FROM services") != services
    restored = govcloud("restore", "-s", stack, "-c", "portal", "--yes")
    assert "verified (facts match)" in restored.stdout
    assert sql(rt, "SELECT count(*) FROM services") == services

    # a restore whose result cannot be verified is rolled back: live data stays as it was before it
    sql(rt, "DELETE FROM services WHERE status = 'withdrawn'")
    before = sql(rt, "SELECT count(*) FROM services")
    model = load_stack(stack)
    repo = open_repository(model)
    latest = repo.snapshots([f"govcloud-stack={stack}", "component=portal", "kind=database"])[-1]
    with tempfile.TemporaryFile() as fh:  # facts that the restored data cannot match
        fh.write(json.dumps({"public.services": {"rows": 1, "md5": "x"}}).encode())
        fh.seek(0)
        repo.backup_stdin("portal.facts.json", fh,
                          tags(model, Item("portal", "facts", "portal.facts.json"), latest.tag("run") or "", "facts"))
    failed = govcloud("restore", "-s", stack, "-c", "portal", "--yes", check=False)
    assert failed.returncode == 2 and "rolled back" in failed.stderr
    assert sql(rt, "SELECT count(*) FROM services") == before
    assert govcloud("status", "-s", stack, "--json").returncode == 0

    # a stopped component is named, and the stack is down
    subprocess.run(["podman", "pod", "stop", "-t", "5", pod_name(model, "portal")], check=True, capture_output=True)
    code, report = health(stack)
    assert code == 2 and report["status"] == "down"
    assert [c["name"] for c in report["checks"] if c["status"] == "down"] == ["portal"]
