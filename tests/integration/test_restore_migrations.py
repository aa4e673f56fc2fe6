"""Restores across schema migrations. A ledger backup taken at the schema before payment's migration 004 (the
database built by migrations 001-003 only, with data of that time) restores into code that has 004 and whatever came
after it, in a fresh drill stack and in place: the data comes back exactly as dumped (facts verified at the backup's
schema), payment brings the schema forward on start, the new columns take their defaults and the books verify. A
backup at a schema this code does not know is refused with one line naming both versions, before anything changes
(no safety backup, no drill stack)."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest

from infra.contract import COMPONENTS_DIR
from infra.model import load_stack
from infra.ops import envs
from infra.ops.backup import run_backup
from infra.ops.repository import open_repository
from infra.ops.schema import code_migrations
from infra.runtime.local import LocalRuntime
from tests.integration.conftest import govcloud
from tests.integration.test_drill import NO_BUS, drill, facts

pytestmark = pytest.mark.podman

ADDS_COLUMNS = "004_reconciliation_source.sql"
BEFORE = code_migrations("payment")[code_migrations("payment").index(ADDS_COLUMNS) - 1]   # 003_status_query.sql
FUTURE = "999_from_newer_code.sql"


def psql(rt: LocalRuntime, query: str) -> str:
    res = rt.exec("postgres", ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "/tmp", "-p",
                               str(rt.model.local.port_offset + 18010), "-U", "postgres", "-d", "payment", "-tAc",
                               query])
    assert res.returncode == 0, res.stderr
    return res.stdout.decode().strip()


def snapshots(stack: str) -> list[Any]:
    return open_repository(load_stack(stack)).snapshots([f"govcloud-stack={stack}"])


def older_ledger(rt: LocalRuntime) -> None:
    """payment's database as the code before 004 made it (its migrations up to BEFORE, each recorded as migrate()
    records them), with a reconciliation and a balanced ledger transaction of that time."""
    folder = COMPONENTS_DIR / "payment" / "payment" / "migrations"
    script = ["SET ROLE payment;",
              "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now());"]
    for name in code_migrations("payment")[: code_migrations("payment").index(BEFORE) + 1]:
        script += [(folder / name).read_text(), f"INSERT INTO schema_migrations (name) VALUES ('{name}');"]
    script += ["INSERT INTO reconciliations (day, created_at, matched, mismatches) VALUES (current_date, now(), 3, '[]');",
               "INSERT INTO ledger_tx (kind, created_at) VALUES ('test', now());",
               "INSERT INTO entries (tx_id, account, amount) SELECT max(id), a, v FROM ledger_tx, "
               "(VALUES ('switch:pending', 700), ('switch:receivable', -700)) e(a, v) GROUP BY a, v;"]
    port = str(rt.model.local.port_offset + 18010)
    base = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp", "-p", port, "-U", "postgres"]
    for query in ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'payment'",
                  "DROP DATABASE payment", "CREATE DATABASE payment OWNER payment"):
        res = rt.exec("postgres", [*base, "-d", "postgres", "-c", query])
        assert res.returncode == 0, res.stderr
    with tempfile.TemporaryFile() as fh:
        fh.write("\n".join(script).encode())
        fh.seek(0)
        res = rt.exec("postgres", [*base, "-d", "payment", "-1"], stdin=fh)
    assert res.returncode == 0, res.stderr


def test_backup_from_before_a_migration_restores_forward_and_a_newer_one_is_refused(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory("mg", 5700, components=NO_BUS)
    govcloud("up", "-s", stack)
    model = load_stack(stack)
    rt = LocalRuntime(model)
    govcloud("backup", "-s", stack)  # every item once (the drill wants them all)

    # the ledger at the schema before 004, backed up so (the hook needs payment running: only the database here)
    rt.scale("payment", running=False)
    older_ledger(rt)
    results = {r.item.key: r for r in run_backup(model, rt, lambda _: None, only="payment")}
    assert results["payment/database"].ok, results
    old = [s for s in snapshots(stack) if s.tag("component") == "payment" and s.tag("kind") == "facts"][-1]
    assert old.tag("schema") == BEFORE, old.tags

    # the code as it is: payment starts, migrates forward (004's columns are there), the ledger moves on
    rt.scale("payment", running=True)
    last = code_migrations("payment")[-1]
    assert psql(rt, "SELECT max(name) FROM schema_migrations") == last
    psql(rt, "INSERT INTO reconciliations (day, created_at, matched, mismatches, source) "
             "VALUES (current_date, now(), 5, '[]', 'uploaded')")
    forward = f"schema {BEFORE} migrated forward on start to {last} "

    # a fresh drill stack: the older backup restores, verifies, and payment's schema comes forward on start
    code, report = drill(stack)
    assert code == 0 and report["ok"], report
    payment = next(r for r in report["results"] if r["component"] == "payment" and r["kind"] == "database")
    assert forward in payment["detail"] and "balanced: True" in payment["detail"], payment

    # in place: the live ledger (at the new schema) gets the older backup back, brought forward the same way
    restored = govcloud("restore", "-s", stack, "-c", "payment", "--yes")
    assert "verified (facts match) in " in restored.stdout and f"s; {forward}" in restored.stdout, restored.stdout
    assert psql(rt, "SELECT max(name) FROM schema_migrations") == last
    assert psql(rt, "SELECT matched, source, settlement_sha256 IS NULL FROM reconciliations ORDER BY id") == "3|switch|t"
    assert psql(rt, "SELECT count(*), sum(amount) FROM entries") == "2|0"
    verify = rt.exec("payment", ["python", "-m", "payment.backup", "verify"])
    assert verify.returncode == 0 and json.loads(verify.stdout)["balanced"], verify.stdout

    # a backup from newer code (a migration this code does not have): refused in one line, nothing changes
    psql(rt, f"INSERT INTO schema_migrations (name) VALUES ('{FUTURE}')")
    govcloud("backup", "-s", stack, "-c", "payment")
    psql(rt, f"DELETE FROM schema_migrations WHERE name = '{FUTURE}'")
    live, before = facts(rt, "payment"), snapshots(stack)
    drills = [r.name for r in envs.records()]
    for args in (["restore", "-s", stack, "-c", "payment", "--yes"], ["drill", "-s", stack, "--json"]):
        refused = govcloud(*args, check=False)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"is at schema {FUTURE}, newer than this code knows (its migrations end at {last})" in refused.stderr
        assert "nothing changed" in refused.stderr
    assert facts(rt, "payment") == live
    assert [s.id for s in snapshots(stack)] == [s.id for s in before]  # not even a safety backup
    assert [r.name for r in envs.records()] == drills                 # no drill stack was made
