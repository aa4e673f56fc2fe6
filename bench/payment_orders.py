"""End-to-end fee payments per second (create → switch → signed callback → paid) beside a same-run baseline.

    .venv/bin/python bench/payment_orders.py [--n 600] [--concurrency 32] [--processes]

A throwaway PostgreSQL 15 (the test fixture's). Default: the payment gateway and the switch simulator in one process
wired by httpx ASGI transports (no sockets, one event loop), the portal faked by an httpx MockTransport.
``--processes``: payment and switch run as their own processes (``python -m payment`` / ``python -m switch``, as
deployed, on loopback ports), the portal is a stub in this process whose receipt of the ``order.paid`` notification
ends an order's end-to-end time. Baseline: the same number of bare single-row INSERT + COMMIT through an async pool
at the same concurrency — what one durable write per order costs on this machine. Prints orders/s, the ratio to the
baseline, create and end-to-end latency percentiles, and checks the books balance afterwards.
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
    print("mode: in-process (payment + switch + client in one event loop, ASGI transports)")
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


async def run_processes(n: int, conc: int, pool_size: int, server: testing.PgServer, pay_db: str, sw_db: str) -> None:
    import json
    import os
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from payment.backup import averify

    base = await baseline(server.dsn(pay_db), n, conc, pool_size)
    paid_at: dict[str, float] = {}
    all_paid = threading.Event()

    class Portal(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real portal

        def do_GET(self) -> None:
            body = b'{"amount": 25000, "currency": "SYP"}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            doc = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if doc["event"] == "order.paid":
                paid_at[doc["order_id"]] = time.perf_counter()
                if len(paid_at) >= n:
                    all_paid.set()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    portal = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=portal.serve_forever, daemon=True).start()
    ports = {c: free_port() for c in ("payment", "switch")}
    common = {"PATH": os.environ.get("PATH", "/usr/bin"), "GOVCLOUD_BIND": "127.0.0.1",
              "PGHOST": str(server.socket_dir), "PGPORT": str(server.port), "PGUSER": "postgres",
              "GOVCLOUD_SECRET_CALLBACK_KEY": KEY,
              "GOVCLOUD_SECRET_ADMIN_TOKEN": ADMIN, "GOVCLOUD_SECRET_NOTIFY_KEY": "bench-notify",
              "GOVCLOUD_SETTING_POOL_MAX": str(pool_size)}
    comp = ROOT / "components"
    envs = {
        "switch": {**common, "PGDATABASE": sw_db, "GOVCLOUD_PORT_HTTP": str(ports["switch"]),
                   "GOVCLOUD_URL_PAYMENT": f"http://127.0.0.1:{ports['payment']}",
                   "GOVCLOUD_SETTING_DISPATCH_INTERVAL_S": "0.01",
                   "PYTHONPATH": f"{comp / 'common'}:{comp / 'switch'}"},
        "payment": {**common, "PGDATABASE": pay_db, "GOVCLOUD_PORT_HTTP": str(ports["payment"]),
                    "GOVCLOUD_URL_SWITCH": f"http://127.0.0.1:{ports['switch']}",
                    "GOVCLOUD_URL_PORTAL": f"http://127.0.0.1:{portal.server_port}",
                    "GOVCLOUD_SETTING_WORKER_INTERVAL_S": "0.01",
                    "PYTHONPATH": f"{comp / 'common'}:{comp / 'payment'}"}}
    procs = {c: subprocess.Popen([sys.executable, "-m", c], env=envs[c], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True) for c in ("switch", "payment")}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['payment']}", timeout=30,
                                     limits=httpx.Limits(max_connections=conc)) as client:
            for _ in range(600):  # readiness of both processes (bounded)
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
            started: dict[str, float] = {}
            create_lat: list[float] = []
            sem = asyncio.Semaphore(conc)

            async def order(i: int) -> None:
                async with sem:
                    t0 = time.perf_counter()
                    resp = await client.post("/api/orders", headers={"Idempotency-Key": f"bench-{i}"},
                                             json={"kind": "fee", "service_id": "passport-renewal",
                                                   "channel": "mtn-cash", "payer_account": f"09{i:08d}"})
                    create_lat.append(time.perf_counter() - t0)
                    assert resp.status_code == 201, resp.text
                    started[resp.json()["id"]] = t0

            t_start = time.perf_counter()
            await asyncio.gather(*(order(i) for i in range(n)))
            if not await asyncio.to_thread(all_paid.wait, 120):
                raise SystemExit(f"only {len(paid_at)} of {n} orders paid in time")
            elapsed = max(paid_at.values()) - t_start
        e2e = [paid_at[k] - started[k] for k in started]
        check = await averify(server.dsn(pay_db))
        rate = n / elapsed
        print("mode: processes (payment, switch and this load generator + portal stub each a process)")
        print(f"baseline bare INSERT+COMMIT : {base:8.0f} /s  (concurrency {conc}, pool {pool_size})")
        print(f"fee payments end to end    : {rate:8.0f} /s  = {rate / base:.3f} x baseline  ({n} orders, "
              f"{elapsed:.2f} s)")
        print(f"create latency  p50 {pct(create_lat, 50):6.1f} ms  p99 {pct(create_lat, 99):6.1f} ms")
        print(f"create → paid (notified) p50 {pct(e2e, 50):6.1f} ms  p99 {pct(e2e, 99):6.1f} ms")
        print(f"ledger balanced: {check['balanced']}  transactions: {check['transactions']}")
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
        portal.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--processes", action="store_true", help="payment and switch as their own processes")
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
        if args.processes:
            asyncio.run(run_processes(args.n, args.concurrency, args.pool, server, names[0], names[1]))
        else:
            db.migrate("payment", conninfo=pay_dsn)
            db.migrate("switch", conninfo=sw_dsn)
            asyncio.run(run(args.n, args.concurrency, args.pool, pay_dsn, sw_dsn))
    finally:
        gen.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
