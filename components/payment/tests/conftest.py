"""In-process wiring for the gateway's tests: payment ⇄ switch simulator over httpx ASGI transports, each on its
own fresh database of the session's real PostgreSQL, one injected clock, a local CA chain, a fake portal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from govcloud_common import db, signing
from govcloud_common.testing import PgServer
from payment.app import build_app
from payment.fees import PortalFeeSource
from payment.gateway import Gateway, PaymentConfig
from payment.notify import NotifyConfig
from payment.receipts import local_chain
from switch.app import Switch, SwitchConfig
from switch.app import build_app as build_switch

KEY = "test-callback-key"
NOTIFY_KEY = "test-notify-key-portal"
ADMIN = "test-admin-token"
COMPONENTS = Path(__file__).resolve().parents[2]
FEE = 1_000
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}
FEES = {"passport-renewal": 25_000, "birth-certificate": 3_500, "driving-licence": 120_000}


class FakeClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


def portal_transport(fees: dict[str, Any]) -> httpx.MockTransport:
    """The portal's fee API as the catalog answers it."""
    def handler(request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["api", "services"] and parts[3] == "fee" and parts[2] in fees:
            return httpx.Response(200, json={"service_id": parts[2], "amount": fees[parts[2]], "currency": "SYP",
                                             "name": parts[2].replace("-", " "), "body_id": "moi"})
        return httpx.Response(404, json={"title": "not found"})
    return httpx.MockTransport(handler)


def new_database(server: PgServer) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server: PgServer, name: str) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Receivers:
    """The portal's and billers' notification endpoints: record what arrives, answer as told."""

    def __init__(self) -> None:
        self.received: list[tuple[str, httpx.Request]] = []
        self.answer = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.received.append((request.url.host, request))
        return httpx.Response(self.answer, json={})


@dataclass
class System:
    pay: httpx.AsyncClient         # a client of the payment API
    sw: httpx.AsyncClient          # a client of the switch API
    gw: Gateway
    switch: Switch
    clock: FakeClock
    root_pem: str
    pay_dsn: str
    sw_dsn: str
    receivers: Receivers
    admin = ADMIN_HEADERS
    key = KEY
    notify_key = NOTIFY_KEY
    fees = FEES

    async def order(self, key: str, **body: Any) -> httpx.Response:
        doc = {"channel": "mtn-cash", "payer_account": "0933123456", **body}
        return await self.pay.post("/api/orders", json=doc, headers={"Idempotency-Key": key})

    async def fee_order(self, key: str, service: str = "passport-renewal", **kw: Any) -> httpx.Response:
        return await self.order(key, kind="fee", service_id=service, **kw)

    async def dispatch(self) -> dict[str, int]:
        """Let the switch deliver its due callbacks once (what its background loop does)."""
        return await self.switch.dispatch_due()

    async def behaviour(self, default: str = "approve", **accounts: str) -> None:
        resp = await self.sw.put("/v1/sim/behaviour", json={"default": default, "accounts": accounts},
                                 headers={"authorization": f"Bearer {ADMIN}"})
        assert resp.status_code == 200, resp.text

    def sql(self, query: str, *args: Any, dsn: str | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn or self.pay_dsn) as conn:
            return conn.execute(query, args).fetchall()

    async def ledger_balanced(self) -> dict[str, Any]:
        check = await self.gw.ledger_check()
        assert check["balanced"], check
        per_tx = self.sql("SELECT tx_id, sum(amount) FROM entries GROUP BY tx_id")
        assert all(s == 0 for _, s in per_tx), per_tx
        return check

    def signed(self, payload: dict[str, Any], key: str = KEY, path: str = "/api/switch/callbacks",
               at: datetime | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload).encode()
        sig = signing.sign(key, "POST", path, body, (at or self.clock()).timestamp())
        return body, {"content-type": "application/json", signing.HEADER: sig}


@pytest_asyncio.fixture
async def system(pg_server: PgServer) -> AsyncIterator[System]:
    pay_db, sw_db = new_database(pg_server), new_database(pg_server)
    pay_dsn, sw_dsn = pg_server.dsn(pay_db), pg_server.dsn(sw_db)
    db.migrate("payment", conninfo=pay_dsn)
    db.migrate("switch", conninfo=sw_dsn)
    clock = FakeClock()
    signer, root = local_chain("test platform")
    sw_cfg = SwitchConfig(conninfo=sw_dsn, key=KEY, admin_token=ADMIN, payment=httpx.AsyncClient(), clock=clock)
    switch_app = build_switch(sw_cfg)
    to_switch = httpx.AsyncClient(transport=httpx.ASGITransport(switch_app), base_url="http://switch")
    portal = httpx.AsyncClient(transport=portal_transport(FEES), base_url="http://portal")
    receivers = Receivers()
    notify_client = httpx.AsyncClient(transport=httpx.MockTransport(receivers.handler))
    cfg = PaymentConfig(conninfo=pay_dsn, key=KEY, admin_token=ADMIN, switch=to_switch,
                        fees=PortalFeeSource(portal), signer=signer, clock=clock,
                        notify=NotifyConfig(notify_client, "http://portal", NOTIFY_KEY, max_attempts=4))
    pay_app = build_app(cfg)
    await sw_cfg.payment.aclose()
    sw_cfg.payment = httpx.AsyncClient(transport=httpx.ASGITransport(pay_app), base_url="http://payment")
    gw: Gateway = pay_app.state.gateway
    sw: Switch = switch_app.state.switch
    await gw.open()
    await sw.open()
    pay = httpx.AsyncClient(transport=httpx.ASGITransport(pay_app), base_url="http://payment")
    try:
        yield System(pay, to_switch, gw, sw, clock, root.public_bytes(serialization.Encoding.PEM).decode(),
                     pay_dsn, sw_dsn, receivers)
    finally:
        for c in (pay, to_switch, portal, sw_cfg.payment, notify_client):
            await c.aclose()
        await gw.close()
        await sw.close()
        drop_database(pg_server, pay_db)
        drop_database(pg_server, sw_db)


# -- real processes ------------------------------------------------------------------------------------------------

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
def stack(pg_server: PgServer) -> Iterator[dict[str, Any]]:
    """payment and the switch as real processes on loopback ports (as deployed), a stub portal, real PostgreSQL."""
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
        yield {"procs": procs, "dbs": dbs, "dsn": pg_server.dsn, "url": f"http://127.0.0.1:{ports['payment']}",
               "wait_until": wait_until, "admin": "fault-admin", "fee": FEE}
    finally:
        for p in procs.values():
            if p.p and p.p.poll() is None:
                p.kill()
        portal.shutdown()
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for name in dbs.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
