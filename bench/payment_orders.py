"""End-to-end fee payments per second (create → switch → signed callback → paid) beside same-run baselines.

    .venv/bin/python bench/payment_orders.py --processes [--n 2000] [--concurrency 64] [--workers 2] [--rate 60]

A throwaway PostgreSQL 15 (the test fixture's: fsync=off, synchronous_commit=off - WAL flushes are not measured).
``--processes`` (the reference): payment and the switch simulator run as deployed (``python -m payment|switch`` on
loopback ports, ``--workers`` uvicorn workers for payment); this process is the load generator (aiohttp, keep-alive;
``--rate``: open loop at that many orders/s, else closed loop at ``--concurrency``) and the portal stub (raw asyncio +
httptools: fee lookups, ``order.paid`` notifications). End to end = the client sends the create → the order's
``closed_at`` (paid); "notified" = the portal stub got ``order.paid``. Baselines in the same run: bare single-row
INSERT + COMMIT through an async pool, and ``GET /healthz`` on the same payment server, same client, same concurrency.
Also printed: the CPU (user + system) each process spent per paid order - payment, switch, PostgreSQL, this process -
and the rate those costs allow on 2 dedicated cores, which does not depend on how busy a shared machine is.

Without ``--processes``: payment and switch in this process over httpx ASGI transports (no sockets), the portal an
httpx MockTransport - the code's own cost without the network, dominated by httpx's in-process transport.
"""

from __future__ import annotations

import argparse
import asyncio
import math
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


def cpu_seconds(pid: int) -> float:
    """CPU (user + system) of a process, its live descendants, and its waited-for children that ended."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
        todo += [int(c) for c in children]
    return total


class Stub(asyncio.Protocol):
    """The portal, as cheap as it gets (httptools, keep-alive): answers fee lookups, records when each order's
    ``order.paid`` notification arrives. It shares the 2 cores with what it measures, so it must cost little."""

    paid_at: dict[str, float]
    expected = 0
    all_paid: asyncio.Event
    FEE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n" \
          b'{"amount": 25000, "currency": "SYP"}'
    ACK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        import json

        if self.parser.get_method() == b"GET":
            self.transport.write(self.FEE)  # type: ignore[attr-defined]
            return
        doc = json.loads(b"".join(self.body))
        if doc.get("event") == "order.paid":
            self.paid_at[doc["order_id"]] = time.time()
            if len(self.paid_at) >= self.expected:
                self.all_paid.set()
        self.transport.write(self.ACK)  # type: ignore[attr-defined]


async def run_processes(n: int, conc: int, pool_size: int, server: testing.PgServer, pay_db: str, sw_db: str,
                        workers: int, switch_workers: int, rate: float | None) -> None:
    import os
    import subprocess

    import aiohttp
    from payment.backup import averify

    base = await baseline(server.dsn(pay_db), n, conc, pool_size)
    Stub.paid_at, Stub.expected, Stub.all_paid = {}, n, asyncio.Event()
    loop = asyncio.get_running_loop()
    portal = await loop.create_server(Stub, "127.0.0.1", 0)
    portal_port = portal.sockets[0].getsockname()[1]
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
                   "GOVCLOUD_SETTING_WORKERS": str(switch_workers),
                   "PYTHONPATH": f"{comp / 'common'}:{comp / 'switch'}"},
        "payment": {**common, "PGDATABASE": pay_db, "GOVCLOUD_PORT_HTTP": str(ports["payment"]),
                    "GOVCLOUD_URL_SWITCH": f"http://127.0.0.1:{ports['switch']}",
                    "GOVCLOUD_URL_PORTAL": f"http://127.0.0.1:{portal_port}",
                    "GOVCLOUD_SETTING_WORKERS": str(workers),
                    "PYTHONPATH": f"{comp / 'common'}:{comp / 'payment'}"}}
    procs = {c: subprocess.Popen([sys.executable, "-m", c], env=envs[c], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True) for c in ("switch", "payment")}
    url = f"http://127.0.0.1:{ports['payment']}"
    try:
        connector = aiohttp.TCPConnector(limit=conc)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as client:
            for _ in range(600):  # readiness of both processes (bounded)
                try:
                    async with client.get(url + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            sem = asyncio.Semaphore(conc)

            async def ping(_: int) -> None:
                async with sem, client.get(url + "/healthz") as r:
                    await r.read()

            # baseline 2: the same server's cheapest round trip, same client, same concurrency
            await asyncio.gather(*(ping(i) for i in range(200)))
            t0, ping_cpu0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(ping(i) for i in range(n)))
            http_rate = n / (time.perf_counter() - t0)
            ping_cpu = (time.process_time() - ping_cpu0) / n
            sent: dict[str, float] = {}
            create_lat: list[float] = []
            body = b'{"kind":"fee","service_id":"passport-renewal","channel":"mtn-cash","payer_account":"%s"}'
            failed: list[str] = []

            async def order(i: int) -> None:
                async with sem:
                    t = time.time()
                    async with client.post(url + "/api/orders", data=body % f"09{i:08d}".encode(), headers={
                            "Idempotency-Key": f"bench-{i}", "content-type": "application/json"}) as resp:
                        doc = await resp.json()
                    create_lat.append(time.time() - t)
                    if resp.status != 201:
                        failed.append(f"HTTP {resp.status}: {doc}")
                        return
                    sent[doc["id"]] = t

            pg_pid = int((server.socket_dir.parent / "data" / "postmaster.pid").read_text().split()[0])
            who = {"payment": procs["payment"].pid, "switch": procs["switch"].pid, "postgres": pg_pid}
            cpu0 = {k: cpu_seconds(v) for k, v in who.items()}
            load_start = os.getloadavg()[0]
            t_start, cpu_start = time.time(), time.process_time()
            if rate:  # open loop: arrivals at a fixed rate whatever the answers (concurrency still capped)
                tasks = []
                for i in range(n):
                    delay = t_start + i / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(order(i)))
                await asyncio.gather(*tasks)
            else:
                await asyncio.gather(*(order(i) for i in range(n)))
            if failed:
                raise SystemExit(f"{len(failed)} creates failed, e.g. {failed[0]}")
            try:
                await asyncio.wait_for(Stub.all_paid.wait(), 120)
            except TimeoutError:
                raise SystemExit(f"only {len(Stub.paid_at)} of {n} orders notified paid in 120 s") from None
            gen_cpu = time.process_time() - cpu_start
            cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in who.items()}
            cpu["load generator + portal stub"] = gen_cpu
        with psycopg.connect(server.dsn(pay_db)) as conn:
            closed: dict[str, float] = dict(conn.execute(
                "SELECT id, extract(epoch FROM closed_at) FROM orders WHERE status = 'paid'").fetchall())
            # orders created by one transaction share created_at, orders paid from one callback batch closed_at
            groups = conn.execute("SELECT count(*)::float / count(DISTINCT created_at),"
                                  " count(*)::float / count(DISTINCT closed_at) FROM orders").fetchone() or (0, 0)
        if len(closed) != n:
            raise SystemExit(f"{len(closed)} of {n} orders paid")
        paid = [float(closed[k]) - sent[k] for k in sent]
        notified = [Stub.paid_at[k] - sent[k] for k in sent]
        elapsed = max(float(v) for v in closed.values()) - t_start
        check = await averify(server.dsn(pay_db))
        paid_rate = n / elapsed
        print(f"mode: processes (payment x{workers} worker(s), switch x{switch_workers}, this load generator + "
              f"portal stub one process); {f'open loop at {rate:g}/s' if rate else 'closed loop'}, concurrency {conc}")
        print(f"baseline bare INSERT+COMMIT : {base:8.0f} /s  (pool {pool_size})")
        print(f"baseline GET /healthz       : {http_rate:8.0f} /s  (same payment server and client)")
        print(f"fee payments created → paid : {paid_rate:8.0f} /s  = {paid_rate / base:.3f} x INSERT, "
              f"{paid_rate / http_rate:.3f} x healthz  ({n} orders, {elapsed:.2f} s)")
        print(f"create latency            p50 {pct(create_lat, 50):7.1f} ms  p99 {pct(create_lat, 99):7.1f} ms")
        print(f"create → paid (closed_at) p50 {pct(paid, 50):7.1f} ms  p99 {pct(paid, 99):7.1f} ms  "
              f"max {max(paid) * 1000:7.1f} ms")
        print(f"create → portal notified  p50 {pct(notified, 50):7.1f} ms  p99 {pct(notified, 99):7.1f} ms")
        print(f"batches (mean): {groups[0]:.1f} orders per create transaction, {groups[1]:.1f} per callback batch")
        print(f"load generator + stub CPU per order {(gen_cpu / n) * 1000:.2f} ms  "
              f"(one healthz round trip {ping_cpu * 1000:.2f} ms)")
        total = sum(cpu.values())
        print("CPU per paid order: " + ", ".join(f"{k} {v / n * 1000:.2f} ms" for k, v in cpu.items())
              + f"; total {total / n * 1000:.2f} ms")
        print(f"  => ceiling on 2 dedicated cores: {2 * n / total:.0f} payments/s (machine shared: load average "
              f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
        print(f"ledger balanced: {check['balanced']}  transactions: {check['transactions']}")
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
        portal.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="orders in flight at most (default 32; open loop: enough for 250 ms at --rate, >= 32)")
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--processes", action="store_true", help="payment and switch as their own processes")
    parser.add_argument("--workers", type=int, default=1, help="payment's uvicorn workers (--processes)")
    parser.add_argument("--switch-workers", type=int, default=1, help="the switch's uvicorn workers (--processes)")
    parser.add_argument("--rate", type=float, default=None, help="open loop: orders per second offered")
    args = parser.parse_args()
    if args.concurrency is None:  # an open loop capped by its own generator would measure the generator
        args.concurrency = max(32, math.ceil(args.rate / 4)) if args.rate else 32
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
            import uvloop

            uvloop.run(run_processes(args.n, args.concurrency, args.pool, server, names[0], names[1], args.workers,
                                     args.switch_workers, args.rate))
        else:
            db.migrate("payment", conninfo=pay_dsn)
            db.migrate("switch", conninfo=sw_dsn)
            asyncio.run(run(args.n, args.concurrency, args.pool, pay_dsn, sw_dsn))
    finally:
        gen.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
