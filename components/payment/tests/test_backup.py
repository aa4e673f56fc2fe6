"""The backup hook: a dump restored into an empty database still balances, to the same figures."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from payment import backup

pytestmark = pytest.mark.asyncio
COMPONENT = Path(__file__).resolve().parents[1]


async def test_dump_restore_verify_round_trip(system, pg_server):
    for i in range(6):
        await system.fee_order(f"k-b{i}", payer_account=f"09330000{i:02d}")
    await system.behaviour("decline")
    await system.fee_order("k-b-declined", service="birth-certificate")
    await system.dispatch()
    await system.behaviour("timeout")
    await system.fee_order("k-b-open", service="driving-licence")
    before = await backup.averify(system.pay_dsn)
    assert before["balanced"] and before["orders"] == {"paid": 6, "declined": 1, "pending": 1}

    out = io.BytesIO()
    backup.dump(out, system.pay_dsn)
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        rows = backup.restore(io.BytesIO(out.getvalue()), pg_server.dsn(name))
        assert rows["orders"] == 8 and rows["receipts"] == 6 and rows["entries"] > 0
        after = await backup.averify(pg_server.dsn(name))
        assert after == before
        with psycopg.connect(pg_server.dsn(name)) as conn:  # kept balances were recomputed, not copied blindly
            kept = conn.execute("SELECT id, balance FROM accounts WHERE tracked ORDER BY id").fetchall()
        with psycopg.connect(system.pay_dsn) as conn:
            assert kept == conn.execute("SELECT id, balance FROM accounts WHERE tracked ORDER BY id").fetchall()
        # restoring again over the restored copy gives the same books (idempotent restore)
        backup.restore(io.BytesIO(out.getvalue()), pg_server.dsn(name))
        assert await backup.averify(pg_server.dsn(name)) == before
        with pytest.raises(ValueError, match="truncated"):
            backup.restore(io.BytesIO(out.getvalue()[: len(out.getvalue()) // 2]), pg_server.dsn(name))
        assert await backup.averify(pg_server.dsn(name)) == before  # a failed restore changed nothing
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_verify_command_prints_json_and_fails_on_unbalanced_books(system, pg_server):
    env_dsn = dict(arg.split("=", 1) for arg in system.pay_dsn.split())
    env = {"PGHOST": env_dsn["host"], "PGPORT": env_dsn["port"], "PGDATABASE": env_dsn["dbname"],
           "PGUSER": env_dsn["user"], "PYTHONPATH": f"{COMPONENT.parent / 'common'}:{COMPONENT}", "PATH": "/usr/bin"}
    await system.fee_order("k-v")
    ok = subprocess.run([sys.executable, "-m", "payment.backup", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and '"balanced": true' in ok.stdout
    with psycopg.connect(system.pay_dsn) as conn:  # forge the books behind the ledger's back
        conn.execute("ALTER TABLE entries DISABLE TRIGGER USER")
        conn.execute("UPDATE entries SET amount = amount + 1 WHERE id = (SELECT min(id) FROM entries)")
    bad = subprocess.run([sys.executable, "-m", "payment.backup", "verify"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and '"balanced": false' in bad.stdout


async def test_a_backup_taken_before_the_statement_level_ledger_triggers_still_restores(pg_server):
    """A ledger dumped under migrations 001-004 (per-entry triggers) restores after 005 (per-statement triggers),
    into a fresh database and over the old one (which restore migrates first), to the same books."""
    from datetime import UTC, datetime

    from govcloud_common.db import migrate
    from payment import ledger

    names = ["t_" + uuid.uuid4().hex[:12] for _ in range(2)]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    old, fresh = (pg_server.dsn(n) for n in names)
    try:
        migrate("payment", conninfo=old, before="005")
        with psycopg.connect(old, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'entries_balanced'").fetchone() == (1,)

        async def books() -> None:
            async with await psycopg.AsyncConnection.connect(old) as conn:
                now = datetime(2026, 12, 7, 10, tzinfo=UTC)
                for i in range(6):
                    async with conn.transaction():
                        await ledger.reserve(conn, f"o{i}", 1000 + i, now)
                    async with conn.transaction():
                        if i % 3:
                            await ledger.commit(conn, f"o{i}", f"service:s{i % 2}", 1000 + i, now)
                        else:
                            await ledger.abort(conn, f"o{i}", 1000 + i, now)

        await books()
        before = await backup.averify(old)
        assert before["balanced"] and before["transactions"] == 12
        with psycopg.connect(old) as conn:
            kept = conn.execute("SELECT id, balance FROM accounts WHERE tracked ORDER BY id").fetchall()
        out = io.BytesIO()
        backup.dump(out, old)
        for target in (fresh, old):
            backup.restore(io.BytesIO(out.getvalue()), target)
            assert await backup.averify(target) == before
            with psycopg.connect(target) as conn:
                assert conn.execute("SELECT id, balance FROM accounts WHERE tracked ORDER BY id").fetchall() == kept
                assert conn.execute("SELECT count(*) FROM schema_migrations WHERE name LIKE '005%%'").fetchone() == (1,)
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
