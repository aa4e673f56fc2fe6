"""The restore drill into a fresh throwaway stack: a stack with a CA, a ledger (payment + switch) and the portal is
backed up, gets more data afterwards, and is drilled; the drill stack restores exactly the backup (not the newer
rows), passes the components' own verification and health, is torn down without a trace, and the live stack is
not touched (same data, same pods). A drill whose data does not verify fails before any component starts on it,
and is torn down all the same."""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
from typing import Any

import pytest

from infra.model import load_stack
from infra.ops import envs
from infra.ops.backup import PG_TOOL, Item, tags
from infra.ops.repository import open_repository
from infra.runtime.local import LocalRuntime, pod_name
from tests.e2e.conftest import podman_objects
from tests.integration.conftest import govcloud

pytestmark = pytest.mark.podman

NO_BUS = {name: {"enabled": False} for name in ("bodysystems", "nats", "bus")}
DATABASES = ("ca", "portal", "switch", "payment")


def facts(rt: LocalRuntime, db: str) -> dict[str, Any]:
    res = rt.exec("postgres", [PG_TOOL, "facts", db])
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def rows(doc: dict[str, Any]) -> int:
    return sum(int(v["rows"]) for v in doc.values())


def pods(rt: LocalRuntime) -> dict[str, str]:
    """Each pod's id and its containers' start times: a restart or a replacement changes them."""
    found = {}
    for spec in rt.specs:
        out = subprocess.run(["podman", "pod", "inspect", "--format", "{{.Id}}", pod_name(rt.model, spec.name)],
                             capture_output=True, text=True, check=True).stdout.strip()
        started = subprocess.run(["podman", "ps", "--filter", f"pod={out}", "--format", "{{.ID}} {{.StartedAt}}"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        found[spec.name] = f"{out} {started}"
    return found


def drill(stack: str) -> tuple[int, dict[str, Any]]:
    proc = govcloud("drill", "-s", stack, "--json", check=False)
    try:
        return proc.returncode, dict(json.loads(proc.stdout))
    except ValueError:
        raise AssertionError(f"drill exited {proc.returncode} without JSON:\n{proc.stdout}\n{proc.stderr}") from None


def test_fresh_drill_restores_the_backup_not_the_live_data_and_leaves_nothing(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory("dr", 5400, components=NO_BUS)
    govcloud("up", "-s", stack)
    rt = LocalRuntime(load_stack(stack))

    govcloud("backup", "-s", stack)
    at_backup = {db: facts(rt, db) for db in DATABASES}
    # data written after the backup: the drill must not see it (that is the RPO)
    port = str(rt.model.local.port_offset + 18010)
    added = rt.exec("postgres", ["psql", "-X", "-h", "/tmp", "-p", port, "-U", "postgres", "-d", "portal", "-tAc",
                                 "INSERT INTO feedback (service_id, kind, useful, text) SELECT id, 'useful', true, "
                                 "'after the backup' FROM services ORDER BY id LIMIT 7"])
    assert added.returncode == 0, added.stderr
    live_before = {db: facts(rt, db) for db in DATABASES}
    assert rows(live_before["portal"]) == rows(at_backup["portal"]) + 7
    pods_before = pods(rt)

    code, report = drill(stack)
    name = report["drill_stack"]
    assert code == 0 and report["ok"], report
    assert report["mode"] == "fresh" and name.startswith("drill-") and report["error"] == ""
    results = {f"{r['component']}/{r['kind']}": r for r in report["results"]}
    assert set(results) == {"ca/database", "ca/hook", "portal/database", "switch/database", "payment/database",
                            "payment/hook", "govcloud/state"}
    assert all(r["ok"] for r in results.values()), results
    for db in DATABASES:  # the backup's rows, not the live ones
        assert results[f"{db}/database"]["rows"] == rows(at_backup[db]), (db, results[f"{db}/database"])
    assert results["portal/database"]["rows"] == rows(live_before["portal"]) - 7
    assert "ocsp" in results["ca/database"]["detail"] and "backup-verify ok" in results["ca/database"]["detail"]
    assert "balanced: True" in results["payment/database"]["detail"]
    health = {(c["layer"], c["name"]): c["status"] for c in report["health"]}
    assert {n for (layer, n) in health if layer == "components"} == {"postgres", "ca", "portal", "switch", "payment"}
    assert set(health.values()) == {"ok"} and report["health_status"] == "ok", report["health"]
    assert report["rpo_s"] > 0 and 0 < report["rto_s"] < report["phases"]["torn down"]
    assert report["rto_s"] >= max(r["rto_s"] for r in results.values())

    # nothing of the drill stack is left, and the live stack is as it was
    assert report["leftovers"] == [] and envs.leftovers(name) == []
    assert podman_objects(name) == {"pod": [], "container": [], "volume": [], "secret": []}
    assert name not in [r.name for r in envs.records()]
    assert {db: facts(rt, db) for db in DATABASES} == live_before
    assert pods(rt) == pods_before

    # a backup whose data does not verify: the drill fails, names it, starts nothing on it, and is torn down
    model = load_stack(stack)
    repo = open_repository(model)
    newest = repo.snapshots([f"govcloud-stack={stack}", "component=switch", "kind=database"])[-1]
    with tempfile.TemporaryFile() as fh:
        fh.write(json.dumps({"public.payments": {"rows": 1, "md5": "x"}}).encode())
        fh.seek(0)
        repo.backup_stdin("switch.facts.json", fh,
                          tags(model, Item("switch", "facts", "switch.facts.json"), newest.tag("run") or "", "facts"))
    code, report = drill(stack)
    assert code == 1 and not report["ok"], report
    assert "switch/database did not restore as backed up" in report["error"]
    failed = [f"{r['component']}/{r['kind']}" for r in report["results"] if not r["ok"]]
    assert "switch/database" in failed and "portal/database" not in failed
    assert "components up" not in report["phases"] and report["health"] == []
    assert report["leftovers"] == [] and podman_objects(report["drill_stack"]) == {
        "pod": [], "container": [], "volume": [], "secret": []}
    assert {db: facts(rt, db) for db in DATABASES} == live_before
    assert pods(rt) == pods_before


ONLY_PORTAL = {name: {"enabled": False} for name in ("bodysystems", "nats", "ca", "switch", "bus", "payment")}


def count(rt: LocalRuntime, query: str) -> int:
    port = str(rt.model.local.port_offset + 18010)
    res = rt.exec("postgres", ["psql", "-X", "-h", "/tmp", "-p", port, "-U", "postgres", "-d", "portal", "-tAc", query])
    assert res.returncode == 0, res.stderr
    return int(res.stdout.decode().strip())


def test_restore_into_a_new_stack_from_an_older_snapshot_is_kept(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory("dr", 5500, components=ONLY_PORTAL)
    govcloud("up", "-s", stack)
    model = load_stack(stack)
    rt = LocalRuntime(model)
    govcloud("backup", "-s", stack)
    first = count(rt, "SELECT count(*) FROM feedback")
    assert rt.exec("postgres", ["psql", "-X", "-h", "/tmp", "-p", str(model.local.port_offset + 18010), "-U",
                                "postgres", "-d", "portal", "-tAc",
                                "INSERT INTO feedback (service_id, kind, useful) SELECT id, 'useful', true "
                                "FROM services ORDER BY id LIMIT 5"]).returncode == 0
    govcloud("backup", "-s", stack)
    older = open_repository(model).snapshots([f"govcloud-stack={stack}", "component=portal", "kind=database"])[-2]

    # bad input: one line naming the problem, nothing created
    new = f"rs-{secrets.token_hex(2)}"
    for args, words in ((["--into", stack], "already exists"), (["--into", new, "--snapshot", "0badc0de"],
                                                                  "--snapshot 0badc0de: no such snapshot")):
        bad = govcloud("restore", "-s", stack, *args, check=False)
        assert bad.returncode != 0 and words in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert envs.leftovers(new) == [] and new not in [r.name for r in envs.records()]

    try:
        proc = govcloud("restore", "-s", stack, "--into", new, "--snapshot", older.id, "--json")
        report = json.loads(proc.stdout)
        assert report["ok"] and report["kept"] and report["drill_stack"] == new, report
        portal = next(r for r in report["results"] if r["component"] == "portal")
        assert portal["snapshot"] == older.id and portal["ok"]
        restored = LocalRuntime(load_stack(new))
        assert count(restored, "SELECT count(*) FROM feedback") == first  # the older snapshot's rows
        assert count(rt, "SELECT count(*) FROM feedback") == first + 5    # the live stack keeps its own
        status = json.loads(govcloud("status", "-s", new, "--json").stdout)
        assert status and all(s["ready"] for s in status), status
    finally:
        if new in [r.name for r in envs.records()]:
            govcloud("env", "destroy", new)
    assert envs.leftovers(new) == []
