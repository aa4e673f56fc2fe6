"""Kill the payment service, then the switch simulator, in the middle of a load run (real processes, real
PostgreSQL, loopback only): afterwards no payment is lost, none is charged twice, and the ledger balances."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from govcloud_common import db
from payment.backup import averify

COMPONENTS = Path(__file__).resolve().parents[2]
FEE = 1_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortalStub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"amount": FEE, "currency": "SYP"}).encode()
        self.send_response(200 if self.path.endswith("/fee") else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition of another process (bounded), e.g. its readiness."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Proc:
    def __init__(self, name: str, env: dict[str, str], port: int) -> None:
        self.name, self.env, self.port, self.p = name, env, port, None

    def start(self) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", self.name], env=self.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True)
        wait_until(self.ready, 30, f"{self.name} ready")

    def ready(self) -> bool:
        assert self.p is not None
        if self.p.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.p.stderr.read().decode()[-2000:]}")  # type: ignore
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()


@pytest.fixture
def stack(pg_server) -> Iterator[dict[str, object]]:
    dbs = {}
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        for c in ("payment", "switch"):
            dbs[c] = "t_" + uuid.uuid4().hex[:12]
            conn.execute(f'CREATE DATABASE "{dbs[c]}"')
    portal = ThreadingHTTPServer(("127.0.0.1", 0), PortalStub)
    threading.Thread(target=portal.serve_forever, daemon=True).start()
    ports = {"payment": free_port(), "switch": free_port()}
    base = {"PATH": os.environ.get("PATH", "/usr/bin"), "GOVCLOUD_BIND": "127.0.0.1", "GOVCLOUD_STACK": "test",
            "PGHOST": str(pg_server.socket_dir), "PGPORT": str(pg_server.port), "PGUSER": "postgres",
            "GOVCLOUD_SECRET_CALLBACK_KEY": "fault-key", "GOVCLOUD_SECRET_ADMIN_TOKEN": "fault-admin",
            "GOVCLOUD_SECRET_NOTIFY_KEY": "fault-notify"}
    procs = {
        "switch": Proc("switch", {**base, "GOVCLOUD_COMPONENT": "switch", "PGDATABASE": dbs["switch"],
                                  "GOVCLOUD_PORT_HTTP": str(ports["switch"]),
                                  "GOVCLOUD_URL_PAYMENT": f"http://127.0.0.1:{ports['payment']}",
                                  "PYTHONPATH": f"{COMPONENTS / 'common'}:{COMPONENTS / 'switch'}"}, ports["switch"]),
        "payment": Proc("payment", {**base, "GOVCLOUD_COMPONENT": "payment", "PGDATABASE": dbs["payment"],
                                    "GOVCLOUD_PORT_HTTP": str(ports["payment"]),
                                    "GOVCLOUD_URL_SWITCH": f"http://127.0.0.1:{ports['switch']}",
                                    "GOVCLOUD_URL_PORTAL": f"http://127.0.0.1:{portal.server_port}",
                                    "GOVCLOUD_SETTING_WORKER_INTERVAL_S": "0.2",
                                    "PYTHONPATH": f"{COMPONENTS / 'common'}:{COMPONENTS / 'payment'}"},
                        ports["payment"]),
    }
    procs["switch"].start()
    procs["payment"].start()
    try:
        yield {"procs": procs, "dbs": dbs, "dsn": pg_server.dsn, "url": f"http://127.0.0.1:{ports['payment']}"}
    finally:
        for p in procs.values():
            if p.p and p.p.poll() is None:
                p.kill()
        portal.shutdown()
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for name in dbs.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    assert check["balanced"] and check["receivable"] == FEE * total


def test_migrations_are_idempotent(pg_dsn):
    assert db.migrate("payment", conninfo=pg_dsn)
    assert db.migrate("payment", conninfo=pg_dsn) == []
