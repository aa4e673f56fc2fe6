"""End-to-end fee payments per second (create → switch → signed callback → paid) beside a same-run baseline.

    .venv/bin/python bench/payment_orders.py [--n 600] [--concurrency 32]

A throwaway PostgreSQL 15 (the test fixture's), the payment gateway and the switch simulator in one process wired
by httpx ASGI transports (no sockets, one event loop), the portal faked by an httpx MockTransport. Baseline: the
same number of bare single-row INSERT + COMMIT through the same kind of async pool at the same concurrency — what
one durable write per order costs on this machine. Prints orders/s, the ratio to the baseline, create and
end-to-end latency percentiles, and checks the books balance afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "components" / "payment"), str(ROOT / "components" / "switch"),
                str(ROOT / "components" / "common")]

import httpx  # noqa: E402
import psycopg  # noqa: E402
from govcloud_common import db, testing  # noqa: E402
from payment.app import build_app  # noqa: E402
from payment.fees import PortalFeeSource  # noqa: E402
from payment.gateway import Gateway, PaymentConfig  # noqa: E402
from payment.receipts import local_chain  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402
from switch.app import SwitchConfig  # noqa: E402
from switch.app import build_app as build_switch  # noqa: E402

KEY, ADMIN = "bench-key", "bench-admin"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] * 1000


async def baseline(dsn: str, n: int, conc: int, pool_size: int) -> float:
    async with AsyncConnectionPool(dsn, min_size=pool_size, max_size=pool_size, open=False) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_baseline (k text PRIMARY KEY, amount bigint)")
        sem = asyncio.Semaphore(conc)

        async def one(i: int) -> None:
            async with sem, pool.connection() as conn:
                await conn.execute("INSERT INTO bench_baseline VALUES (%s, %s)", (f"b{i}", i + 1))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - start)


async def run(n: int, conc: int, pool_size: int, pay_dsn: str, sw_dsn: str) -> None:
    base = await baseline(pay_dsn, n, conc, pool_size)

    def portal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"amount": 25_000, "currency": "SYP"})

    signer, _ = local_chain("bench")
    sw_cfg = SwitchConfig(conninfo=sw_dsn, key=KEY, admin_token=ADMIN, payment=httpx.AsyncClient(),
                          pool_max=pool_size)
    switch_app = build_switch(sw_cfg)
    to_switch = httpx.AsyncClient(transport=httpx.ASGITransport(switch_app), base_url="http://switch")
    fees = PortalFeeSource(httpx.AsyncClient(transport=httpx.MockTransport(portal), base_url="http://portal"))
    pay_app = build_app(PaymentConfig(conninfo=pay_dsn, key=KEY, admin_token=ADMIN, switch=to_switch, fees=fees,
                                      signer=signer, pool_max=pool_size))
    await sw_cfg.payment.aclose()
    sw_cfg.payment = httpx.AsyncClient(transport=httpx.ASGITransport(pay_app), base_url="http://payment")
    gw: Gateway = pay_app.state.gateway
    await gw.open()
    await switch_app.state.switch.open()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(pay_app), base_url="http://payment")

    started: dict[str, float] = {}
    paid_at: dict[str, float] = {}
    real_callback = gw.callback

    async def timed_callback(signature: str | None, raw: bytes) -> dict[str, object]:
        out = await real_callback(signature, raw)
        if out["result"] == "paid":
            paid_at[str(out["order"])] = time.perf_counter()
        return out

    gw.callback = timed_callback  # type: ignore[method-assign]
    create_lat: list[float] = []
    sem = asyncio.Semaphore(conc)
    done = asyncio.Event()

    async def order(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            resp = await client.post("/api/orders", headers={"Idempotency-Key": f"bench-{i}"},
                                     json={"kind": "fee", "service_id": "passport-renewal", "channel": "mtn-cash",
                                           "payer_account": f"09{i:08d}"})
            create_lat.append(time.perf_counter() - t0)
            assert resp.status_code == 201, resp.text
            started[resp.json()["id"]] = t0

    async def dispatcher() -> None:  # the switch's delivery loop, as in production, bounded by the run
        sw = switch_app.state.switch
        while not (done.is_set() and len(paid_at) >= n):
            got = await sw.dispatch_due()
            if not got["delivered"] and not got["failed"]:
                await asyncio.sleep(0.002)

    t_start, cpu_start = time.perf_counter(), time.process_time()
    loop = asyncio.create_task(dispatcher())
    await asyncio.gather(*(order(i) for i in range(n)))
    done.set()
    await asyncio.wait_for(loop, timeout=120)
    elapsed, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    e2e = [paid_at[k] - started[k] for k in started]
    check = await gw.ledger_check()
    rate = n / elapsed
    print(f"baseline bare INSERT+COMMIT : {base:8.0f} /s  (concurrency {conc}, pool {pool_size})")
    print(f"fee payments end to end    : {rate:8.0f} /s  = {rate / base:.3f} x baseline  ({n} orders, {elapsed:.2f} s)")
    print(f"create latency  p50 {pct(create_lat, 50):6.1f} ms  p99 {pct(create_lat, 99):6.1f} ms")
    print(f"create → paid   p50 {pct(e2e, 50):6.1f} ms  p99 {pct(e2e, 99):6.1f} ms  mean "
          f"{statistics.mean(e2e) * 1000:.1f} ms")
    print(f"python CPU per paid order (gateway + switch + client, one process): {cpu / n * 1000:.1f} ms")
    print(f"ledger balanced: {check['balanced']}  transactions: {check['transactions']}")
    for c in (client, to_switch, sw_cfg.payment):
        await c.aclose()
    await gw.close()
    await switch_app.state.switch.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args()
    fixture = getattr(testing.pg_server, "__wrapped__", testing.pg_server)
    gen = fixture()
    server = next(gen)
    try:
        names = ["bench_pay_" + uuid.uuid4().hex[:6], "bench_sw_" + uuid.uuid4().hex[:6]]
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
        pay_dsn, sw_dsn = server.dsn(names[0]), server.dsn(names[1])
        db.migrate("payment", conninfo=pay_dsn)
        db.migrate("switch", conninfo=sw_dsn)
        asyncio.run(run(args.n, args.concurrency, args.pool, pay_dsn, sw_dsn))
    finally:
        gen.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
