"""The message log: every exchange in a hash chain; verification finds altered, inserted and removed records,
rewritten chains (by the signed seal) and altered bodies; backup/restore re-verifies."""

from __future__ import annotations

import io
import json

import psycopg
import pytest
from bus.msglog import MessageLog, chain_hash, verify_log
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.asyncio
PERSON = "/r1/cra/population/persons/persons/01010000001"


async def traffic(harness, n: int = 5) -> None:
    async with harness.client("portal") as c:
        for _ in range(n):
            assert (await c.get(PERSON)).status_code == 200
    async with harness.client("clinic") as c:
        assert (await c.get(PERSON)).status_code == 403  # refusals are logged too
    await harness.bus.msglog.flush()


async def test_every_exchange_is_logged_and_the_chain_verifies(harness, pg_dsn: str) -> None:
    await traffic(harness)
    report = (await harness.admin.get("/admin/log/verify")).json()
    assert report == {"ok": True, "records": {"node-a": 6}, "seals": 0, "problems": []}
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT record FROM message_log ORDER BY seq").fetchall()
    assert [r[0]["status"] for r in rows] == [200] * 5 + [403]
    assert rows[-1][0]["client"] == "moh/clinic" and rows[-1][0]["mode"] == "refused"
    assert all(len(r[0]["respSha256"]) == 64 and r[0]["correlationId"] for r in rows)


async def test_altered_record_is_detected(harness, pg_dsn: str) -> None:
    await traffic(harness)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE message_log SET record = jsonb_set(record, '{status}', '500') WHERE seq = 3")
    report = verify_log(pg_dsn)
    assert not report["ok"]
    assert report["problems"] == ["node-a#3: content does not match its hash (record altered)"]


async def test_removed_record_is_detected(harness, pg_dsn: str) -> None:
    await traffic(harness)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("DELETE FROM message_log WHERE seq = 2")
    problems = verify_log(pg_dsn)["problems"]
    assert "node-a#3: sequence jumps from 1 to 3 (1 record(s) removed)" in problems
    assert any("node-a#3: prev_hash does not link" in p for p in problems)


async def test_inserted_record_is_detected(harness, pg_dsn: str) -> None:
    await traffic(harness)
    with psycopg.connect(pg_dsn) as conn:  # make room after #2 and forge a well-formed record there
        conn.execute("UPDATE message_log SET seq = -seq - 1 WHERE seq > 2")
        conn.execute("UPDATE message_log SET seq = -seq WHERE seq < 0")
        prev = conn.execute("SELECT hash FROM message_log WHERE seq = 2").fetchone()[0]
        forged = {"mode": "sync", "client": "moi/portal", "service": "cra/population/persons", "status": 200,
                  "ts": "2026-01-01T00:00:00+00:00"}
        conn.execute("INSERT INTO message_log (chain, seq, ts, record, prev_hash, hash) "
                     "VALUES ('node-a', 3, now(), %s, %s, %s)", (Jsonb(forged), prev, chain_hash(prev, 3, forged)))
    problems = verify_log(pg_dsn)["problems"]
    assert problems[0].startswith("node-a#4: prev_hash does not link")  # records 1-3 still verify
    assert not any(p.startswith(("node-a#1", "node-a#2", "node-a#3")) for p in problems)


async def test_rewritten_chain_is_caught_by_the_signed_seal(harness, pg_dsn: str) -> None:
    await traffic(harness, 3)
    sealed = (await harness.admin.post("/admin/log/seal")).json()["sealed"]
    assert sealed["seq"] == 4
    assert verify_log(pg_dsn, harness.bus.issuers)["ok"]
    with psycopg.connect(pg_dsn) as conn:  # an attacker with database access recomputes the whole chain
        rows = conn.execute("SELECT seq, record FROM message_log ORDER BY seq").fetchall()
        prev = "0" * 64
        for seq, record in rows:
            if seq == 2:
                record["status"] = 404
            digest = chain_hash(prev, seq, record)
            conn.execute("UPDATE message_log SET record = %s, prev_hash = %s, hash = %s WHERE seq = %s",
                         (Jsonb(record), prev, digest, seq))
            prev = digest
    assert verify_log(pg_dsn)["problems"] == ["seal node-a#4: sealed hash differs from the record's (chain rewritten)"]
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE log_seals SET hash = %s", (prev,))
    assert verify_log(pg_dsn)["problems"] == ["seal node-a#4: signature invalid (seal altered)"]


async def test_truncation_behind_a_seal_is_detected(harness, pg_dsn: str) -> None:
    await traffic(harness, 3)
    await harness.bus.msglog.seal()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("DELETE FROM message_log WHERE seq >= 3")
    assert "seal node-a#4: sealed record is missing (records removed)" in verify_log(pg_dsn)["problems"]


async def test_stored_bodies_are_checked(harness, pg_dsn: str) -> None:
    harness.bus.msglog.store_bodies = True
    async with harness.client("portal") as c:
        r = await c.post("/r1/mof/inbox/notices/payment-notices",
                         json={"noticeId": "N-9", "nationalId": "01010000001", "amount": "5", "reference": "R"})
    assert r.status_code == 201
    await harness.bus.msglog.flush()
    assert verify_log(pg_dsn)["ok"]
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE message_log SET body = convert_to(replace(convert_from(body, 'UTF8'), '\"5\"', "
                     "'\"50000\"'), 'UTF8') WHERE body IS NOT NULL")
    assert verify_log(pg_dsn)["problems"] == ["node-a#1: stored body does not match its hash (body altered)"]


async def test_chain_continues_across_restarts(harness, pg_dsn: str) -> None:
    await traffic(harness, 2)
    again = MessageLog(harness.bus.pool, "node-a")
    await again.start()
    seq, _ = again.append({"mode": "test"})
    await again.stop()
    assert seq == 4
    assert verify_log(pg_dsn)["ok"]


async def test_backup_restore_reverifies(harness, pg_dsn: str, pg_server, monkeypatch) -> None:
    from bus import cli

    await traffic(harness, 2)
    await harness.bus.msglog.seal()
    dumped = json.loads(json.dumps(cli.dump(pg_dsn)))
    target = pg_server.dsn("postgres")
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bus_restore WITH (FORCE)")
        conn.execute("CREATE DATABASE bus_restore")
    restored = pg_server.dsn("bus_restore")
    cli.restore(dumped, restored)
    report = verify_log(restored, harness.bus.issuers)
    assert report["ok"] and report["records"] == {"node-a": 3} and report["seals"] == 1
    with psycopg.connect(restored) as conn:
        assert conn.execute("SELECT count(*) FROM bodies").fetchone()[0] == 26
        assert conn.execute("SELECT count(*) FROM access_rights").fetchone()[0] == 3
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(dumped)))
    monkeypatch.setenv("PGDATABASE", "bus_restore")
    assert cli.main(["restore"]) == 0
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DROP DATABASE bus_restore WITH (FORCE)")
