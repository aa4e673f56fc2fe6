"""Bus test fixtures: the throwaway PKI, a real nats-server (the nats component's own command), the
bodysystems simulator and a bus node, all on 127.0.0.1 ephemeral ports in the test's event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from pki import Pki, build_pki

REPO = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="govcloud-bus-pki-") as d:
        p, server = build_pki(Path(d))
        yield p
        server.shutdown()


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # accepting (queued) from now on: no wait for the server to come up
    return sock


@dataclass
class NatsServer:
    url: str
    monitor: str
    proc: subprocess.Popen[bytes]


def start_nats(store: Path, ports: list[int] | None = None) -> NatsServer:
    """Run the nats component's command (components/nats/component.yaml) with the contract's environment."""
    spec = yaml.safe_load((REPO / "components" / "nats" / "component.yaml").read_text())
    ports = list(ports or [])
    while len(ports) < 2:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    command = [c.replace("/usr/sbin/nats-server", os.environ.get("NATS_SERVER", "/usr/sbin/nats-server"))
               for c in spec["command"]]
    env = {**os.environ, "GOVCLOUD_BIND": "127.0.0.1", "GOVCLOUD_PORT_CLIENT": str(ports[0]),
           "GOVCLOUD_PORT_MONITOR": str(ports[1]), "GOVCLOUD_STACK": "test", **spec.get("env", {}),
           "GOVCLOUD_SETTING_STORE_DIR": str(store)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    lines: list[bytes] = []
    while time.monotonic() < deadline:  # event-driven: the server logs "Server is ready" once it accepts
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if b"Server is ready" in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return NatsServer(f"nats://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", proc)
    proc.kill()
    raise RuntimeError("nats-server did not become ready:\n" + b"".join(lines).decode(errors="replace"))


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="govcloud-nats-") as d:
        server = start_nats(Path(d))
        try:
            yield server
        finally:
            server.proc.terminate()
            server.proc.wait(10)


class AppServer:
    """A uvicorn server on a pre-bound socket, served by the running event loop."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket, scheme: str = "http") -> None:
        self.server, self.sock = server, sock
        self.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AppServer:
        self.server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task:
            await asyncio.wait_for(self.task, 10)
        self.sock.close()


def plain(app: Any) -> AppServer:
    return AppServer(uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")),
                     _listening_socket())


@pytest_asyncio.fixture
async def bodysystems() -> AsyncIterator[AppServer]:
    from bodysystems.app import build_app

    async with plain(build_app()) as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    bus: Any
    mtls_url: str
    admin: httpx.AsyncClient
    pki: Pki
    bodysystems: AppServer
    clock: Clock

    def client(self, name: str | None, **kwargs: Any) -> httpx.AsyncClient:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_bundle))
        if name:
            crt, key = self.pki.files[name]
            ctx.load_cert_chain(crt, key)
        return httpx.AsyncClient(base_url=self.mtls_url, verify=ctx, timeout=20, **kwargs)


async def register_members(admin: httpx.AsyncClient, bs_url: str) -> None:
    async def ok(resp: httpx.Response) -> httpx.Response:
        assert resp.status_code < 300, resp.text
        return resp

    await ok(await admin.post("/admin/bodies/seed"))
    await ok(await admin.put("/admin/systems/moi/portal", json={"base_url": None, "description": "citizen portal"}))
    await ok(await admin.put("/admin/systems/moh/clinic", json={"base_url": None}))
    await ok(await admin.put("/admin/systems/cra/population", json={"base_url": f"{bs_url}/cra/population"}))
    await ok(await admin.put("/admin/systems/mola/landregistry", json={"base_url": f"{bs_url}/mola/landregistry"}))
    await ok(await admin.put("/admin/systems/mof/inbox", json={"base_url": f"{bs_url}/mof/inbox"}))
    await ok(await admin.put("/admin/services/cra/population/persons", json={
        "protocol": "rest", "description_url": f"{bs_url}/cra/population/openapi.json",
        "mapping": {"namespace": "urn:govcloud:cra:population"}}))
    await ok(await admin.put("/admin/services/mola/landregistry/parcels", json={
        "protocol": "soap", "path": "soap", "description_url": f"{bs_url}/mola/landregistry/soap?wsdl",
        "timeout_ms": 2000}))
    await ok(await admin.put("/admin/services/mof/inbox/notices", json={"protocol": "rest", "timeout_ms": 2000}))
    for service in ("cra/population/persons", "mola/landregistry/parcels", "mof/inbox/notices"):
        await ok(await admin.post("/admin/rights", json={"client": "moi/portal", "service": service}))


@pytest_asyncio.fixture
async def harness(pg_dsn: str, nats_server: NatsServer, pki: Pki, bodysystems: AppServer
                  ) -> AsyncIterator[Harness]:
    from bus.app import Bus, BusConfig, admin_app
    from bus.tlsserver import install_handshake_alerts, mtls_server, server_context

    assert install_handshake_alerts()

    crt, key = pki.files["bus"]
    cfg = BusConfig(admin_token=ADMIN_TOKEN, conninfo=pg_dsn, nats_url=nats_server.url, tls_cert=str(crt),
                    tls_key=str(key), ca_bundle=str(pki.ca_bundle), node="node-a", domain="gov.test",
                    breaker_threshold=3, breaker_reset=5.0, max_attempts=3, backoff=(0.05, 0.1, 0.2),
                    stream_prefix="t" + uuid.uuid4().hex[:8], seal_interval=0, ack_wait=3.0)
    clock = Clock()
    bus = Bus(cfg, breaker_clock=clock)
    await bus.start()
    sock = _listening_socket()
    members = AppServer(mtls_server(bus.router, "127.0.0.1", 0, server_context(str(crt), str(key),
                                                                                str(pki.ca_bundle))), sock, "https")
    admin_server = plain(admin_app(bus))
    async with members, admin_server, httpx.AsyncClient(
            base_url=admin_server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=20) as admin:
        await register_members(admin, bodysystems.url)
        h = Harness(bus, members.url, admin, pki, bodysystems, clock)
        try:
            yield h
        finally:
            await h.bus.stop()


SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def soap_request(op: str, ns: str, **fields: str) -> bytes:
    inner = "".join(f"<m:{k}>{v}</m:{k}>" for k, v in fields.items())
    return (f'<?xml version="1.0"?><soap:Envelope xmlns:soap="{SOAP11}" xmlns:m="{ns}"><soap:Body>'
            f"<m:{op}>{inner}</m:{op}></soap:Body></soap:Envelope>").encode()
