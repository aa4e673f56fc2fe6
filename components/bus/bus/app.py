"""Assembly: the registry, identity checks, router, message log and delivery, and the admin API (plain HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from govcloud_common.own_certificate import OwnCertificate
from govcloud_common.service import create_app
from psycopg_pool import AsyncConnectionPool
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from bus import metrics
from bus.breaker import Breakers
from bus.delivery import Delivery
from bus.identity import IdentityVerifier, RevocationChecker
from bus.msglog import MessageLog, Signer, verify_log
from bus.registry import Registry, RegistryError, read_bodies
from bus.router import Router, Upstream


@dataclass
class BusConfig:
    admin_token: str
    conninfo: str = ""
    nats_url: str = "nats://127.0.0.1:18020"
    tls_cert: str = "/var/lib/govcloud/bus/cert.pem"  # ca_client.IssuedCertificate.write() names
    tls_key: str = "/var/lib/govcloud/bus/key.pem"
    ca_bundle: str = "/var/lib/govcloud/bus/chain.pem"  # the platform issuing CA .. root: trusted for bus clients
    ca_url: str | None = None
    node: str = field(default_factory=socket.gethostname)
    domain: str = ""
    log_bodies: bool = False
    revocation: bool = True
    revocation_max_age: float = 300.0
    breaker_threshold: int = 5
    breaker_reset: float = 10.0
    max_attempts: int = 5
    backoff: Sequence[float] = (1, 2, 5, 10, 30, 60)
    stream_prefix: str = "bus"
    registry_refresh: float = 5.0  # other replicas' admin changes (and revoked rights) apply within this
    ack_wait: float = 60.0  # > the longest service timeout: an unacknowledged delivery is retried after this
    seal_interval: float = 300.0
    cert_check: float = 3600.0  # the own certificate is renewed when due (a third of its life left); checked this often

    @classmethod
    def from_env(cls) -> BusConfig:
        from govcloud_common.settings import Settings as S

        def setting(key: str, default: str) -> str:
            return S.setting(key, default)

        nats_url = os.environ.get("GOVCLOUD_URL_NATS", "")
        if not nats_url.startswith("nats://"):
            nats_url = setting("nats_url", "nats://127.0.0.1:18020")
        return cls(
            admin_token=S.secret("admin-token"), nats_url=nats_url,
            tls_cert=setting("tls_cert", cls.tls_cert), tls_key=setting("tls_key", cls.tls_key),
            ca_bundle=setting("ca_bundle", cls.ca_bundle), ca_url=os.environ.get("GOVCLOUD_URL_CA"),
            log_bodies=setting("log_bodies", "false").lower() == "true", domain=os.environ.get("GOVCLOUD_DOMAIN", ""),
            revocation=setting("revocation", "require") != "off",
            max_attempts=int(setting("max_attempts", "5")),
            seal_interval=float(setting("seal_interval", "300")),
            cert_check=float(setting("cert_check_s", "3600")),
        )


def own_certificate(cfg: BusConfig) -> OwnCertificate:
    """The bus's tls-server certificate (also its message-log seal key), obtained from and renewed by the platform
    CA with ``GOVCLOUD_SECRET_CA_TOKEN`` (a CA token allowed to issue tls-server certificates) and
    ``GOVCLOUD_URL_CA``; names from the ``tls_names`` setting (default ``bus.<domain>,localhost``). The issuing chain
    written beside it (chain.pem) is the trust anchor for bus-client certificates."""
    from govcloud_common.settings import Settings

    names = [n.strip() for n in Settings.setting("tls_names", f"bus.{cfg.domain},localhost").split(",") if n.strip()]
    return OwnCertificate(Path(cfg.tls_cert), Path(cfg.tls_key), Path(cfg.ca_bundle), "tls-server", names, token=os.environ.get("GOVCLOUD_SECRET_CA_TOKEN"),
                          ca_url=cfg.ca_url)


def ensure_certificate(cfg: BusConfig) -> str:
    """Obtain the bus's own certificate when it has none (or a mismatched pair), renew it when due."""
    return own_certificate(cfg).ensure()


class Bus:
    """Every moving part of one bus node; ``start``/``stop`` in the running event loop."""

    def __init__(self, cfg: BusConfig, *, breaker_clock: Any = None) -> None:
        self.cfg = cfg
        self.pool = AsyncConnectionPool(cfg.conninfo, min_size=2, max_size=10, open=False)
        self.registry = Registry(self.pool)
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
                                      follow_redirects=False)
        pem = Path(cfg.ca_bundle).read_bytes()
        self.issuers = x509.load_pem_x509_certificates(pem)
        self.revocation = RevocationChecker(self.http, cfg.revocation_max_age, ca_url=cfg.ca_url) if cfg.revocation else None
        self.verifier = IdentityVerifier(self.issuers, self.revocation, domain=cfg.domain)
        self.breakers = Breakers(cfg.breaker_threshold, cfg.breaker_reset,
                                 **({"clock": breaker_clock} if breaker_clock else {}))
        signer = None
        if Path(cfg.tls_key).exists() and Path(cfg.tls_cert).exists():
            signer = Signer.from_pem(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())
        self.msglog = MessageLog(self.pool, cfg.node, cfg.log_bodies, signer)
        self.upstream = Upstream()
        self.router = Router(self.registry, self.verifier, self.breakers, self.msglog, self.upstream)
        self.delivery = Delivery(cfg.nats_url, self.router, self.registry, self.pool, prefix=cfg.stream_prefix,
                                 max_attempts=cfg.max_attempts, backoff=cfg.backoff, ack_wait=cfg.ack_wait)
        self._sealer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._tls_contexts: list[ssl.SSLContext] = []

    def server_context(self) -> ssl.SSLContext:
        """The members' mTLS context; kept, so a renewed certificate reaches new handshakes."""
        from bus.tlsserver import server_context

        ctx = server_context(self.cfg.tls_cert, self.cfg.tls_key, self.cfg.ca_bundle)
        self._tls_contexts.append(ctx)
        return ctx

    def reload_certificate(self) -> None:
        """Serve and seal with the certificate now on disk: new handshakes present it, open connections keep
        theirs; a changed chain adds its CAs as trust anchors (members' older certificates stay trusted)."""
        for ctx in self._tls_contexts:
            ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        self.msglog.signer = Signer.from_pem(Path(self.cfg.tls_key).read_bytes(), Path(self.cfg.tls_cert).read_bytes())
        pem = Path(self.cfg.ca_bundle).read_bytes()
        known = {c.fingerprint(hashes.SHA256()) for c in self.issuers}
        added = [c for c in x509.load_pem_x509_certificates(pem) if c.fingerprint(hashes.SHA256()) not in known]
        if added:
            self.issuers.extend(added)  # the verifier holds this list
            for ctx in self._tls_contexts:
                ctx.load_verify_locations(cadata=pem.decode())
        logging.getLogger("bus").info("serving the renewed certificate", extra={"fields": {
            "serial": f"{x509.load_pem_x509_certificate(Path(self.cfg.tls_cert).read_bytes()).serial_number:x}",
            "new_trust_anchors": len(added)}})

    async def start(self) -> None:
        from govcloud_common import db

        await asyncio.to_thread(db.migrate, "bus", self.cfg.conninfo)
        await self.pool.open(wait=True)
        await self.registry.reload()
        await self.msglog.start()
        await self.delivery.start()
        if self.msglog.signer is not None and self.cfg.seal_interval > 0:
            self._sealer = asyncio.create_task(self._seal_periodically(), name="msglog-seal")
        self._refresher = asyncio.create_task(self._refresh_periodically(), name="registry-refresh")
        if self.cfg.ca_url:
            self._renewer = asyncio.create_task(
                own_certificate(self.cfg).keep(self.reload_certificate, self.cfg.cert_check), name="certificate-renewal")

    async def stop(self) -> None:
        for task in (self._sealer, self._refresher, self._renewer):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.delivery.stop()
        await self.msglog.stop()
        await self.upstream.close()
        await self.http.aclose()
        await self.pool.close()

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.registry_refresh)  # a schedule, not synchronisation
            try:
                await self.registry.reload()
                metrics.QUEUE_DEPTH.labels(self.delivery.stream).set(await self.delivery.queue_depth())
            except Exception:
                logging.getLogger("bus").exception("registry refresh failed")

    async def _seal_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.seal_interval)  # a schedule, not synchronisation
            with contextlib.suppress(Exception):
                await self.msglog.seal()

    # ---- readiness ----------------------------------------------------------------------------------------

    async def check_db(self) -> str | None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return None

    async def check_certificate(self) -> str | None:
        if not Path(self.cfg.tls_cert).exists():
            return f"own certificate {self.cfg.tls_cert} missing"
        cert = x509.load_pem_x509_certificate(Path(self.cfg.tls_cert).read_bytes())
        if cert.not_valid_after_utc <= datetime.now(UTC):
            return f"own certificate expired at {cert.not_valid_after_utc.isoformat()}"
        return None

    async def check_ca(self) -> str | None:
        if not self.cfg.ca_url:
            return None  # no CA component wired (tests, or a stack without one)
        resp = await self.http.get(self.cfg.ca_url.rstrip("/") + "/healthz", timeout=2.0)
        return None if resp.status_code == 200 else f"CA answered HTTP {resp.status_code}"


# ---- admin API ------------------------------------------------------------------------------------------------

BODY = r"^[a-z][a-z0-9]{1,20}$"
CODE = r"^[a-z][a-z0-9-]{0,40}$"
BodyId = Annotated[str, PathParam(pattern=BODY)]
Code = Annotated[str, PathParam(pattern=CODE)]


class SystemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: AnyHttpUrl | None = Field(None, description="where its provided services live; null: client only")
    description: str = ""


class OperationMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["GET", "PUT", "POST", "DELETE", "PATCH"] | None = None
    path: str | None = Field(None, pattern=r"^/[\x21-\x7e]*$")
    body: bool | None = None
    soapAction: str | None = None


class Mapping(BaseModel):
    """Declarative conversion overrides (see README): namespace, fault code -> HTTP status, operations."""

    model_config = ConfigDict(extra="forbid")
    namespace: str | None = Field(None, max_length=500)
    faults: dict[str, int] = Field(default_factory=dict)
    operations: dict[str, OperationMapping] = Field(default_factory=dict)


class ServiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: Literal["rest", "soap"]
    path: str = Field("", pattern=r"^[A-Za-z0-9._~/-]*$", max_length=500, description="path under base_url")
    description: str | None = Field(None, description="OpenAPI (JSON) for rest, WSDL (XML) for soap")
    description_url: AnyHttpUrl | None = Field(None, description="fetch the OpenAPI/WSDL from here instead")
    mapping: Mapping = Field(default_factory=Mapping)
    timeout_ms: int = Field(10_000, ge=10, le=300_000)


class RightIn(BaseModel):
    client: str = Field(pattern=r"^[a-z][a-z0-9]{1,20}/[a-z][a-z0-9-]{0,40}$", description="body/system")
    service: str = Field(pattern=r"^[a-z][a-z0-9]{1,20}/[a-z][a-z0-9-]{0,40}/[a-z][a-z0-9-]{0,40}$",
                         description="body/system/service")


class BodyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ministry", "agency", "authority"]
    en: str = Field(min_length=1, max_length=300)
    ar: str = Field("", max_length=300)
    parent: str | None = Field(None, pattern=BODY)


def admin_app(bus: Bus) -> FastAPI:
    app = create_app("bus", checks={"database": bus.check_db, "nats": bus.delivery.ready,
                                    "ca": bus.check_ca, "certificate": bus.check_certificate})

    def auth(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {bus.cfg.admin_token}".encode()):
            raise HTTPException(401, "admin token required (Authorization: Bearer ...)")

    admin = [Depends(auth)]

    def bad(exc: Exception) -> HTTPException:
        return HTTPException(422, str(exc))

    @app.get("/admin/bodies", dependencies=admin)
    async def bodies() -> list[dict[str, Any]]:
        return await bus.registry.list_bodies()

    @app.put("/admin/bodies/{body}", dependencies=admin, status_code=204)
    async def put_body(body: BodyId, doc: BodyIn) -> None:
        try:
            await bus.registry.upsert_body(body, doc.type, doc.en, doc.ar, doc.parent)
        except Exception as exc:
            raise bad(exc) from None

    @app.post("/admin/bodies/seed", dependencies=admin)
    async def seed() -> dict[str, int]:
        return {"bodies": await bus.registry.seed_bodies(read_bodies())}

    @app.get("/admin/systems", dependencies=admin)
    async def systems(body: Annotated[str | None, Query(pattern=BODY)] = None) -> list[dict[str, Any]]:
        return await bus.registry.list_systems(body)

    @app.put("/admin/systems/{body}/{system}", dependencies=admin, status_code=204)
    async def put_system(body: BodyId, system: Code, doc: SystemIn) -> None:
        try:
            await bus.registry.upsert_system(body, system, str(doc.base_url) if doc.base_url else None,
                                             doc.description)
        except Exception as exc:
            raise bad(exc) from None

    @app.delete("/admin/systems/{body}/{system}", dependencies=admin, status_code=204)
    async def delete_system(body: BodyId, system: Code) -> None:
        if not await bus.registry.delete_system(body, system):
            raise HTTPException(404, f"no system {body}/{system}")

    @app.get("/admin/services", dependencies=admin)
    async def services() -> list[dict[str, Any]]:
        return await bus.registry.list_services()

    @app.put("/admin/services/{body}/{system}/{service}", dependencies=admin)
    async def put_service(body: BodyId, system: Code, service: Code, doc: ServiceIn) -> dict[str, Any]:
        description = doc.description
        if description is None and doc.description_url:
            try:
                resp = await bus.http.get(str(doc.description_url), timeout=10)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise HTTPException(422, f"cannot fetch {doc.description_url}: {exc}") from None
            if resp.status_code != 200:
                raise HTTPException(422, f"{doc.description_url} answered HTTP {resp.status_code}")
            description = resp.text
        try:
            return await bus.registry.upsert_service(body, system, service, doc.protocol, doc.path, description,
                                                     doc.mapping.model_dump(exclude_none=True, exclude_defaults=True),
                                                     doc.timeout_ms)
        except RegistryError as exc:
            raise bad(exc) from None
        except Exception as exc:  # unknown system etc.
            raise bad(exc) from None

    @app.delete("/admin/services/{body}/{system}/{service}", dependencies=admin, status_code=204)
    async def delete_service(body: BodyId, system: Code, service: Code) -> None:
        if not await bus.registry.delete_service(body, system, service):
            raise HTTPException(404, f"no service {body}/{system}/{service}")

    @app.get("/admin/rights", dependencies=admin)
    async def rights() -> list[dict[str, Any]]:
        return await bus.registry.list_rights()

    @app.post("/admin/rights", dependencies=admin, status_code=204)
    async def grant(doc: RightIn) -> None:
        client = tuple(doc.client.split("/"))
        service = tuple(doc.service.split("/"))
        try:
            await bus.registry.grant(client, service)  # type: ignore[arg-type]
        except Exception as exc:
            raise bad(exc) from None

    @app.delete("/admin/rights", dependencies=admin, status_code=204)
    async def revoke(doc: RightIn) -> None:
        n = await bus.registry.revoke(tuple(doc.client.split("/")), tuple(doc.service.split("/")))  # type: ignore[arg-type]
        if not n:
            raise HTTPException(404, "no such access right")

    @app.get("/admin/breakers", dependencies=admin)
    async def breakers() -> dict[str, Any]:
        return bus.breakers.snapshot()

    @app.post("/admin/log/seal", dependencies=admin)
    async def seal() -> dict[str, Any]:
        try:
            return {"sealed": await bus.msglog.seal()}
        except RuntimeError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/admin/log/verify", dependencies=admin)
    async def verify() -> dict[str, Any]:
        await bus.msglog.flush()
        return await asyncio.to_thread(verify_log, bus.cfg.conninfo, bus.issuers)

    @app.get("/admin/messages/{message_id}", dependencies=admin)
    async def message(message_id: Annotated[str, PathParam(pattern=r"^[\x21-\x7e]{1,128}$")]) -> dict[str, Any]:
        async with bus.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT message_id, client, service, state, attempts, last_error FROM async_messages "
                "WHERE message_id = %s", (message_id,))).fetchone()
        if row is None:
            raise HTTPException(404, f"no message {message_id}")
        return dict(zip(("messageId", "client", "service", "state", "attempts", "lastError"), row, strict=True))

    @app.get("/admin/dead-letters", dependencies=admin)
    async def dead_letters() -> list[dict[str, Any]]:
        return await bus.delivery.dead_letters()

    @app.post("/admin/dead-letters/{seq}/replay", dependencies=admin)
    async def replay(seq: Annotated[int, PathParam(ge=1, le=2**63 - 1)]) -> dict[str, Any]:
        try:
            return await bus.delivery.replay(seq)
        except Exception as exc:
            raise HTTPException(404, f"no dead letter {seq}: {exc}") from None

    @app.get("/admin/queue", dependencies=admin)
    async def queue() -> dict[str, int]:
        depth = await bus.delivery.queue_depth()
        metrics.QUEUE_DEPTH.labels(bus.delivery.stream).set(depth)
        return {"depth": depth}

    return app
