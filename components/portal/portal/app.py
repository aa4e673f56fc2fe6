"""The portal's HTTP surface: JSON API (OpenAPI 3) and the server-rendered pages."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from govcloud_common.service import background, create_app
from govcloud_common.settings import Settings
from psycopg_pool import AsyncConnectionPool

from portal import export, importer, models, search_index, store

MAX_OFFSET = 10_000
MAX_IMPORT_BYTES = 64 * 1024 * 1024
ADMIN_REALM = 'Basic realm="govcloud portal admin", charset="UTF-8"'


class RateLimiter:
    """At most ``limit`` events per client in any ``window`` seconds (sliding window, in memory per replica)."""

    def __init__(self, limit: int, window: float = 60.0, max_clients: int = 100_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self.events: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        if len(self.events) > self.max_clients:
            self.events = {k: v for k, v in self.events.items() if v and v[-1] > now - self.window}
        q = self.events.setdefault(client, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(now)
        return True


def trusted_proxies(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``GOVCLOUD_SETTING_TRUSTED_PROXIES``: comma-separated addresses/CIDRs of the ingress in front of us."""
    return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]


def _trusted(addr: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_key(request: Request) -> str:
    """The citizen's address: the peer, or behind a trusted proxy the right-most untrusted X-Forwarded-For hop."""
    peer = request.client.host if request.client else "unknown"
    nets = request.app.state.trusted_proxies
    if not nets or not _trusted(peer, nets):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, nets):
            return hop
    return hops[0] if hops else peer


def _admin_token(request: Request) -> str:
    token = request.app.state.admin_token
    if token is None:
        try:
            token = Settings.secret("admin-token")
        except RuntimeError as exc:
            raise HTTPException(503, f"administration is not configured: {exc}") from None
    return token


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password
    return None


def is_admin(request: Request) -> bool:
    given = presented_token(request)
    return given is not None and hmac.compare_digest(given.encode(), _admin_token(request).encode())


def require_admin(request: Request) -> None:
    given = presented_token(request)
    if given is None:
        raise HTTPException(401, "admin authentication required (Authorization: Bearer <admin-token>)",
                            headers={"WWW-Authenticate": ADMIN_REALM})
    if not hmac.compare_digest(given.encode(), _admin_token(request).encode()):
        raise HTTPException(403, "invalid admin token")


Admin = Annotated[None, Depends(require_admin)]


def pool_of(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool  # type: ignore[no-any-return]


def json_response(doc: Any) -> Response:
    """Search results as JSON, encoded by orjson without a second pass through the response model (the rows come
    from the constrained tables in exactly the model's shape; tests/test_search_index.py checks that the model
    would return them unchanged). The service detail keeps the model pass: it drops stored fields (documents'
    ``key``) the API does not publish."""
    return Response(orjson.dumps(doc), media_type="application/json")


def index_of(request: Request) -> search_index.SearchIndex | None:
    return request.app.state.search_index  # type: ignore[no-any-return]


BODIES_TTL = 30.0  # seconds: the directory's counts change only with imports (which reset it) or a new seed


async def cached_bodies(request: Request) -> list[dict]:
    """The directory with published counts; every page shows body names, so it is kept briefly in memory."""
    expires, value = request.app.state.bodies_cache
    if time.monotonic() >= expires:
        value = await store.bodies(pool_of(request))
        request.app.state.bodies_cache = (time.monotonic() + BODIES_TTL, value)
    return value  # type: ignore[no-any-return]


def build_app(conninfo: str = "", admin_token: str | None = None, feedback_per_minute: int | None = None,
              pool_size: int | None = None, proxies: str | None = None, memory_search: bool | None = None,
              notify_key: str | None = None) -> FastAPI:
    """The portal app; ``conninfo`` empty means libpq's PG* variables (the env contract).

    ``memory_search`` (setting ``search``: ``memory``, the default, or ``sql``): answer searches from the
    in-memory index (``portal.search_index``), kept current in every worker by the catalog's notifications.
    ``notify_key``: the payment gateway's signing key (else secret ``notify-key``, shared as ``payment/notify-key``).
    """
    size = pool_size or int(Settings.setting("db-pool", "10"))
    if memory_search is None:
        memory_search = Settings.setting("search", "memory") != "sql"
    index = search_index.SearchIndex(conninfo) if memory_search else None
    # random_page_cost 1.1: the catalog is small and cached; with the default (4) the planner prefers a sequential
    # scan detoasting every tsvector over the GIN index, 5-10x slower for typical searches (bench/portal_search.py)
    pool = AsyncConnectionPool(conninfo, min_size=2, max_size=size, open=False,
                               kwargs={"autocommit": True, "options": "-c random_page_cost=1.1"})

    async def catalog_changed() -> None:
        app.state.bodies_cache = (0.0, [])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        try:
            # every worker follows the catalog on its own connection (searches use SQL until its first load)
            async with background((lambda: search_index.follow(index, catalog_changed)) if index else None):
                yield
        finally:
            await pool.close()

    async def check_database() -> str | None:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        return None

    async def check_migrations() -> str | None:
        files = sorted(p.name for p in resources.files("portal").joinpath("migrations").iterdir()
                       if p.name.endswith(".sql"))
        async with pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT name FROM schema_migrations")
            done = {r[0] for r in await cur.fetchall()}
        missing = [f for f in files if f not in done]
        return f"migrations not applied: {', '.join(missing)}" if missing else None

    async def check_catalog() -> str | None:
        async with pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT services, published FROM catalog_seed")
            row = await cur.fetchone()
        return None if row else "catalog not seeded yet (bootstrap: python -m portal.seed)"

    app = create_app(
        "portal",
        checks={"database": check_database, "migrations": check_migrations, "catalog": check_catalog},
        lifespan=lifespan,
        description="Government service catalog (CPSV-AP), directory of bodies, search and citizen feedback.",
        version="1.0.0",
    )
    app.state.pool = pool
    app.state.search_index = index
    app.state.admin_token = admin_token
    app.state.notify_key = notify_key
    rate = feedback_per_minute or int(Settings.setting("feedback-per-minute", "10"))
    app.state.feedback_limiter = RateLimiter(rate)
    app.state.bodies_cache = (0.0, [])
    app.state.trusted_proxies = trusted_proxies(proxies if proxies is not None
                                                else Settings.setting("trusted-proxies", ""))

    def statuses_for(request: Request, status: str) -> list[str]:
        if status == "published":
            return ["published"]
        if not is_admin(request):
            raise HTTPException(401 if presented_token(request) is None else 403,
                                "only published services are public; other statuses need the admin token",
                                headers={"WWW-Authenticate": ADMIN_REALM})
        return list(models.Status.__args__) if status == "all" else [status]  # type: ignore[attr-defined]

    @app.get("/api/services", response_model=models.ServicePage, tags=["services"])
    async def list_services(
        request: Request,
        q: Annotated[str, Query(max_length=200, description="words in Arabic or English")] = "",
        body: str | None = None, category: str | None = None,
        channel: Literal["online", "office", "phone"] | None = None,
        life_event: str | None = None,
        fee_min: Annotated[int | None, Query(ge=0)] = None,
        fee_max: Annotated[int | None, Query(ge=0)] = None,
        max_hours: Annotated[int | None, Query(ge=0, description="processing time at most, in hours")] = None,
        status: Literal["published", "draft", "withdrawn", "all"] = "published",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Response:
        filters = store.Filters(q=q, body=body, category=category, channel=channel, life_event=life_event,
                                fee_min=fee_min, fee_max=fee_max, max_hours=max_hours,
                                statuses=statuses_for(request, status))
        return json_response(await store.search(pool_of(request), filters, limit, offset, index_of(request)))

    @app.get("/api/services/{service_id}", response_model=models.Service, tags=["services"],
             responses={404: {"description": "no such published service"}})
    async def get_service(request: Request, service_id: str) -> dict:
        statuses = ["draft", "published", "withdrawn"] if is_admin(request) else ["published"]
        try:
            return await store.service(pool_of(request), service_id, statuses)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/api/services/{service_id}/fee", response_model=models.Fee, tags=["services"],
             responses={404: {"description": "no such published service"}})
    async def get_fee(request: Request, service_id: str) -> dict:
        """The fee the payment component charges: an exact integer amount in SYP (published services only)."""
        try:
            s = await store.service(pool_of(request), service_id, ["published"])
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {"service_id": s["id"], "body_id": s["body_id"], "amount": s["fee_syp"], "amount_syp": s["fee_syp"], "currency": "SYP",
                "name": s["name_en"], "name_ar": s["name_ar"],
                "legal_basis_en": s["fee_legal_basis_en"], "legal_basis_ar": s["fee_legal_basis_ar"],
                "payment_channels": s["payment_channels"]}

    @app.post("/api/services/{service_id}/feedback", response_model=models.Feedback, status_code=201,
              tags=["feedback"], responses={404: {"description": "no such published service"},
                                            429: {"description": "too many submissions from this client"}})
    async def create_feedback(request: Request, service_id: str, item: models.FeedbackIn) -> dict:
        return await submit_feedback(request, service_id, item)

    async def submit_feedback(request: Request, service_id: str, item: models.FeedbackIn) -> dict:
        if item.website:
            raise HTTPException(400, "submission rejected")
        if not request.app.state.feedback_limiter.allow(client_key(request)):
            raise HTTPException(429, "too many feedback submissions; try again in a minute",
                                headers={"Retry-After": "60"})
        try:
            return await store.add_feedback(pool_of(request), service_id, item.kind, item.useful, item.field,
                                            item.text)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    app.state.submit_feedback = submit_feedback

    @app.get("/api/bodies", response_model=list[models.Body], tags=["bodies"])
    async def list_bodies(request: Request) -> list:
        return await cached_bodies(request)

    @app.get("/api/bodies/{body_id}", response_model=models.BodyDetail, tags=["bodies"],
             responses={404: {"description": "no such body"}})
    async def get_body(request: Request, body_id: str) -> dict:
        try:
            return await store.body(pool_of(request), body_id)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/api/admin/feedback", response_model=models.FeedbackList, tags=["admin"])
    async def admin_feedback(
        request: Request, _: Admin, status: models.FeedbackStatus | None = None, body: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict:
        return await store.list_feedback(pool_of(request), status, body, limit, offset)

    @app.patch("/api/admin/feedback/{feedback_id}", response_model=models.Feedback, tags=["admin"],
               responses={404: {"description": "no such feedback"},
                          409: {"description": "transition not allowed from the current status"}})
    async def moderate(request: Request, _: Admin, feedback_id: int, change: models.Moderation) -> dict:
        try:
            return await store.moderate(pool_of(request), feedback_id, change.status, change.note)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except store.Conflict as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/api/admin/statistics", response_model=list[models.BodyStatistics], tags=["admin"])
    async def admin_statistics(request: Request, _: Admin) -> list:
        return await store.statistics(pool_of(request))

    @app.get("/api/export/catalog.jsonld", tags=["export"],
             responses={200: {"content": {"application/ld+json": {}}}})
    async def export_jsonld(request: Request, body: str | None = None,
                            status: Literal["published", "all"] = "published") -> Response:
        """The catalog as CPSV-AP 3.2 JSON-LD (conforms to the SEMIC SHACL shapes)."""
        statuses = statuses_for(request, status)
        bodies, services = await store.export_rows(pool_of(request), statuses, body)
        doc = export.jsonld(bodies, services, base=str(request.base_url).rstrip("/"))
        return JSONResponse(doc, media_type="application/ld+json")

    @app.get("/api/export/catalog.csv", tags=["export"], responses={200: {"content": {"text/csv": {}}}})
    async def export_csv(request: Request, body: str | None = None,
                         status: Literal["published", "all"] = "published") -> Response:
        statuses = statuses_for(request, status)
        _, services = await store.export_rows(pool_of(request), statuses, body)
        return Response(export.csv_text(services), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="catalog.csv"'})

    @app.post("/api/admin/import", response_model=models.ImportResult, tags=["admin"],
              responses={413: {"description": "body too large"},
                         422: {"model": models.ImportFailure, "description": "invalid records; nothing applied"}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "text/csv": {"schema": {"type": "string"}},
                  "application/ld+json": {"schema": {"type": "object"}}}}})
    async def import_catalog(request: Request, _: Admin, format: Literal["csv", "jsonld"] | None = None,
                             dry_run: bool = False) -> Response:
        """Import services in the export formats: validated first, all-or-nothing, idempotent."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        fmt = format or ("csv" if ctype == "text/csv" else "jsonld" if ctype in (
            "application/ld+json", "application/json") else None)
        if fmt is None:
            raise HTTPException(415, "send text/csv or application/ld+json (or pass ?format=csv|jsonld)")
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_IMPORT_BYTES:
            raise HTTPException(413, f"import larger than {MAX_IMPORT_BYTES} bytes")
        data = await request.body()
        if len(data) > MAX_IMPORT_BYTES:
            raise HTTPException(413, f"import larger than {MAX_IMPORT_BYTES} bytes")
        try:
            result = await importer.run_import(pool_of(request), fmt, data, dry_run)
        except importer.ImportError_ as exc:
            return JSONResponse({"applied": False, "errors": exc.errors}, status_code=422)
        request.app.state.bodies_cache = (0.0, [])
        if result.get("applied") and request.app.state.search_index is not None:
            await request.app.state.search_index.reload()  # this worker reads its writes; the others are notified
        return JSONResponse(result)

    from portal import pages, payments

    pages.mount(app)
    payments.mount(app)
    return app


WORKERS = 2  # uvicorn processes by default (setting ``workers``): the 2 cores; see README, Performance


def main() -> None:
    from govcloud_common import db, logs
    from govcloud_common.service import serve

    logs.configure("portal", os.environ.get("GOVCLOUD_LOG_LEVEL", "INFO"))
    db.migrate("portal")
    serve("portal.asgi:app", default_port=18060, default_workers=WORKERS)
