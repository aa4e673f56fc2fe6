"""The payment gateway's HTTP API (errors are application/problem+json)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from govcloud_common import rawroute
from govcloud_common.service import background, create_app
from pydantic import BaseModel, ConfigDict, Field, field_validator

from payment.gateway import SLUG, TEXT, ApiError, Bill, Callback, Gateway, OrderRequest, PaymentConfig

log = logging.getLogger("payment")


def problem(status: int, title: str, detail: str = "") -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


class ChannelIn(BaseModel):
    kind: Literal["wallet", "bank"]
    name: str = Field(min_length=1, max_length=128, pattern=TEXT)
    enabled: bool = True


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date: dt.date
    settlement_csv: str | None = Field(None, max_length=64 * 2**20, description=(
        "the settlement file (CSV, PROTOCOL.md section 4) to match instead of fetching the switch's"))

    @field_validator("date")
    @classmethod
    def _sane(cls, v: dt.date) -> dt.date:
        if not 2000 <= v.year <= 2200:
            raise ValueError("date out of range")
        return v


class BillerNotifyIn(BaseModel):
    url: str = Field(pattern=r"^https?://[!-~]+$", max_length=500)
    secret: str = Field(min_length=16, max_length=200, pattern=r"^[!-~]+$")


OrderId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 255}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}


def build_app(cfg: PaymentConfig) -> FastAPI:
    gw = Gateway(cfg)

    async def db_check() -> str | None:
        async with gw.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return None

    async def switch_check() -> str | None:
        resp = await cfg.switch.get("/healthz")
        return None if resp.status_code == 200 else f"switch /healthz answered {resp.status_code}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.open()
        try:
            async with background((lambda: _workers(gw)) if cfg.run_workers else None):
                yield
        finally:
            await gw.close()

    app = create_app("payment", checks={"database": db_check, "switch": switch_check}, lifespan=lifespan)
    app.state.gateway = gw

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "invalid request", str(exc.errors()))

    def admin(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {cfg.admin_token}":
            raise ApiError(401, "unauthenticated", "admin token required")

    @app.get("/api/channels")
    async def channels() -> list[dict[str, Any]]:
        return await gw.channels()

    @app.put("/api/admin/channels/{cid}")
    async def put_channel(cid: Annotated[str, Path(pattern=SLUG)], body: ChannelIn, request: Request) -> dict[str, Any]:
        admin(request)
        await gw.put_channel(cid, body.kind, body.name, body.enabled)
        return {"id": cid, **body.model_dump()}

    @app.get("/api/billers")
    async def billers() -> list[dict[str, Any]]:
        return await gw.billers()

    @app.put("/api/admin/bills")
    async def load_bills(bills: list[Bill], request: Request) -> dict[str, int]:
        admin(request)
        return {"loaded": await gw.load_bills(bills)}

    @app.get("/api/bills/{reference}")
    async def bill(reference: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$")]) -> dict[str, Any]:
        return await gw.bill_inquiry(reference)

    @app.post("/api/orders", status_code=201,
              openapi_extra={"parameters": [IDEMPOTENCY], "requestBody": _body(OrderRequest)})
    async def create_order(request: Request) -> JSONResponse:
        status, doc = await gw.create_order(request.headers.get("idempotency-key"), await request.body())
        return JSONResponse(doc, status_code=status)

    @app.get("/api/orders/{order_id}")
    async def order(order_id: OrderId) -> dict[str, Any]:
        return await gw.order(order_id)

    @app.post("/api/orders/{order_id}/cancel")
    async def cancel(order_id: OrderId) -> dict[str, Any]:
        return await gw.cancel(order_id)

    @app.get("/api/orders/{order_id}/receipt")
    async def receipt(order_id: OrderId) -> dict[str, Any]:
        return await gw.receipt(order_id)

    @app.get("/api/receipts/chain")
    async def receipt_chain() -> dict[str, Any]:
        return {"algorithm": cfg.signer.algorithm, "chain": cfg.signer.chain_pem()}

    @app.post("/api/switch/callbacks", openapi_extra={
        "parameters": [{"name": "X-Switch-Signature", "in": "header", "required": True, "schema": {"type": "string"}}],
        "requestBody": _body(Callback)})
    async def callback(request: Request) -> dict[str, Any]:
        return await gw.callback(request.headers.get("x-switch-signature"), await request.body())

    @app.post("/api/reconciliations", status_code=201)
    async def reconcile(body: ReconcileIn, request: Request) -> dict[str, Any]:
        admin(request)
        return await gw.reconcile(body.date, body.settlement_csv)

    @app.get("/api/reconciliations/{rid}")
    async def reconciliation(rid: Annotated[int, Path(ge=1, le=2**62)], request: Request) -> dict[str, Any]:
        admin(request)
        return await gw.reconciliation(rid)

    @app.get("/api/ledger/check")
    async def ledger_check(request: Request) -> dict[str, Any]:
        admin(request)
        return await gw.ledger_check()

    # The hot endpoints as plain ASGI handlers (govcloud_common.rawroute): the same gateway calls, errors and
    # answers as the FastAPI routes above, which still describe them in the OpenAPI document.
    def problem_bytes(exc: ApiError) -> bytes:
        return orjson.dumps({"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail})

    async def create_order_raw(scope: rawroute.Scope, receive: rawroute.Receive, send: rawroute.Send) -> None:
        raw = await rawroute.read_body(receive)
        try:
            status, doc = await gw.create_order(rawroute.header(scope, b"idempotency-key"), raw)
        except ApiError as exc:
            await rawroute.respond(send, exc.status, problem_bytes(exc), b"application/problem+json")
            return
        await rawroute.respond(send, status, orjson.dumps(doc))

    async def callback_raw(scope: rawroute.Scope, receive: rawroute.Receive, send: rawroute.Send) -> None:
        raw = await rawroute.read_body(receive)
        try:
            doc = await gw.callback(rawroute.header(scope, b"x-switch-signature"), raw)
        except ApiError as exc:
            await rawroute.respond(send, exc.status, problem_bytes(exc), b"application/problem+json")
            return
        await rawroute.respond(send, 200, orjson.dumps(doc))

    rawroute.add_raw_route(app, "/api/orders", "POST", create_order_raw)
    rawroute.add_raw_route(app, "/api/switch/callbacks", "POST", callback_raw)

    def notifier() -> Any:
        if gw.notifier is None:
            raise ApiError(404, "notifications are not configured")
        return gw.notifier

    @app.put("/api/admin/billers/{biller}/notify")
    async def biller_notify(biller: Annotated[str, Path(pattern=SLUG)], body: BillerNotifyIn,
                            request: Request) -> dict[str, str]:
        admin(request)
        await gw.set_biller_notify(biller, body.url, body.secret)
        return {"biller": biller, "url": body.url}

    @app.post("/api/admin/notifications/deliver")
    async def deliver(request: Request) -> dict[str, int]:
        admin(request)
        return await notifier().deliver_due(gw.now())

    @app.get("/api/admin/notifications/dead")
    async def dead(request: Request) -> list[dict[str, Any]]:
        admin(request)
        return await notifier().dead_letters()

    @app.post("/api/admin/notifications/{nid}/redeliver")
    async def redeliver(nid: Annotated[int, Path(ge=1, le=2**62)], request: Request) -> dict[str, Any]:
        admin(request)
        if not await notifier().redeliver(nid, gw.now()):
            raise ApiError(404, "no such dead letter", str(nid))
        return {"id": nid, "requeued": True}

    @app.post("/api/admin/sync-overdue")
    async def sync_overdue(request: Request) -> dict[str, int]:
        admin(request)
        return await gw.sync_overdue()

    @app.post("/api/admin/expire")
    async def expire(request: Request) -> dict[str, int]:
        admin(request)
        return {"expired": await gw.expire_due()}

    return app


async def _workers(gw: Gateway) -> None:
    """Expiry and overdue status queries every ``worker_interval_s``; notifications as soon as this process queued
    one (woken by the callback that did), else every interval. Each runs in every uvicorn worker: the rows they take
    are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent runs share the work and never do it twice."""

    async def maintenance() -> None:
        while True:
            try:
                await gw.expire_due()
                await gw.sync_overdue()
            except Exception:  # a transient database or network fault must not stop the workers for good
                log.exception("background run failed")
            await asyncio.sleep(gw.cfg.worker_interval_s)

    async def notifications() -> None:
        notifier = gw.notifier
        assert notifier is not None
        while True:
            notifier.wake.clear()
            try:
                got = await notifier.deliver_due(gw.now())
            except Exception:
                log.exception("notification delivery failed")
                got = {"delivered": 0}
            if not got["delivered"]:  # nothing due (or a full batch went out: look again at once)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(notifier.wake.wait(), gw.cfg.worker_interval_s)

    await asyncio.gather(maintenance(), *([notifications()] if gw.notifier else []))
