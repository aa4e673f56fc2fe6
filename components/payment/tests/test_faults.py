"""Kill the payment service, then the switch simulator, in the middle of a load run (real processes, real
PostgreSQL, loopback only): afterwards no payment is lost, none is charged twice, and the ledger balances."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import psycopg
import pytest
from govcloud_common import db
from payment.backup import averify


async def load(url: str, keys: list[str], kill_at: int, kill: Callable[[], None], restart: Callable[[], None]) -> dict:
    """Create one order per key, 8 at a time; after ``kill_at`` orders the victim is killed, later restarted; every
    failed create is retried with the same Idempotency-Key (bounded) until it is answered."""
    created: dict[str, dict] = {}
    failures: list[str] = []
    sem = asyncio.Semaphore(8)
    sent = 0
    killed = asyncio.Event()
    back = asyncio.Event()

    async def one(client: httpx.AsyncClient, key: str) -> None:
        nonlocal sent
        async with sem:
            sent += 1
            if sent == kill_at:
                kill()
                killed.set()
            for _ in range(200):
                try:
                    resp = await client.post("/api/orders", headers={"Idempotency-Key": key}, json={
                        "kind": "fee", "service_id": "svc", "channel": "mtn-cash", "payer_account": "0933000000"})
                except httpx.HTTPError:
                    resp = None
                if resp is not None and resp.status_code == 201:
                    created[key] = resp.json()
                    return
                assert resp is None or resp.status_code in (502, 503), resp.text
                failures.append(key)
                await back.wait()  # the victim is down: retry once it is back

    async def reviver() -> None:
        await killed.wait()
        await asyncio.to_thread(restart)
        back.set()

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(reviver(), *(one(client, k) for k in keys))
    assert failures, "the fault hit no request"
    return created


def settled(dsn: Callable[[str], str], dbs: dict[str, str], n: int) -> bool:
    with psycopg.connect(dsn(dbs["payment"])) as conn:
        return conn.execute("SELECT count(*) FROM orders WHERE status = 'paid'").fetchone()[0] >= n


@pytest.mark.asyncio
async def test_killing_payment_then_switch_mid_load_loses_and_doubles_nothing(stack):
    procs, dbs, dsn, url = stack["procs"], stack["dbs"], stack["dsn"], stack["url"]
    wait_until = stack["wait_until"]
    total = 0
    for victim, tag in (("payment", "p"), ("switch", "s")):
        keys = [f"{tag}-{i}" for i in range(40)]
        created = await load(url, keys, 15, procs[victim].kill, procs[victim].start)
        assert sorted(created) == sorted(keys)
        total += len(keys)
        await asyncio.to_thread(wait_until, lambda n=total: settled(dsn, dbs, n), 60, "every order paid")

    with psycopg.connect(dsn(dbs["payment"])) as conn:
        orders = dict(conn.execute("SELECT id, status FROM orders").fetchall())
        commits = conn.execute("SELECT order_id, count(*) FROM ledger_tx WHERE kind = 'commit' GROUP BY 1").fetchall()
    with psycopg.connect(dsn(dbs["switch"])) as conn:
        rtps = dict(conn.execute("SELECT rtp_id, status FROM rtp").fetchall())
    assert len(orders) == total and set(orders.values()) == {"paid"}        # nothing lost
    assert set(rtps) == set(orders) and set(rtps.values()) == {"approved"}  # one request to pay per order
    assert len(commits) == total and all(c == 1 for _, c in commits)       # nobody charged twice
    check = await averify(dsn(dbs["payment"]))
    assert check["balanced"] and check["receivable"] == stack["fee"] * total


def test_migrations_are_idempotent(pg_dsn):
    assert db.migrate("payment", conninfo=pg_dsn)
    assert db.migrate("payment", conninfo=pg_dsn) == []
