"""The switch simulator's HTTP API: the switch protocol (PROTOCOL.md) plus a control surface for tests."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from govcloud_common import signing
from govcloud_common.service import background, create_app
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger("switch")
Clock = Callable[[], datetime]
Mode = Literal["approve", "decline", "timeout", "duplicate"]
CALLBACK_PATH = "/api/switch/callbacks"
MAX_BACKOFF_S = 300


def utcnow() -> datetime:
    return datetime.now(UTC)


class Channel(BaseModel):
    kind: Literal["wallet", "bank"]
    provider: str = Field(min_length=1, max_length=64)
    account: str = Field(min_length=1, max_length=64)


class RtpRequest(BaseModel):
    rtp_id: str = Field(min_length=1, max_length=64)
    amount: int = Field(gt=0, le=10**15, strict=True)
    currency: Literal["SYP"]
    channel: Channel
    payee: str = Field(min_length=1, max_length=128)
    expires_at: datetime


class Behaviour(BaseModel):
    default: Mode = "approve"
    accounts: dict[str, Mode] = Field(default_factory=dict, description="payer account -> mode")


class RtpPatch(BaseModel):
    settled_amount: int | None = None
    in_settlement: bool | None = None


@dataclass
class SwitchConfig:
    conninfo: str
    key: str
    admin_token: str
    payment: httpx.AsyncClient  # base_url = the gateway (payment component)
    clock: Clock = utcnow
    dispatch_interval_s: float = 0.2
    pool_max: int = 8
    run_dispatcher: bool = False
    pool: AsyncConnectionPool | None = field(default=None, repr=False)


def problem(status: int, title: str, detail: str = "") -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


class Switch:
    def __init__(self, cfg: SwitchConfig) -> None:
        self.cfg = cfg
        # autocommit: each of the simulator's writes is one statement (no BEGIN/COMMIT round trips); the dispatcher
        # opens its transaction explicitly
        self.pool = cfg.pool or AsyncConnectionPool(cfg.conninfo, min_size=1, max_size=cfg.pool_max, open=False,
                                                    kwargs={"autocommit": True})
        self._behaviour: tuple[float, Behaviour] | None = None
        self.wake = asyncio.Event()  # set when this process queued a callback: the dispatcher runs at once

    async def open(self) -> None:
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    def now(self) -> datetime:
        return self.cfg.clock()

    async def behaviour(self) -> Behaviour:
        """The configured behaviour, re-read from the database at most once a second."""
        if self._behaviour and time.monotonic() - self._behaviour[0] < 1.0:
            return self._behaviour[1]
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT config FROM behaviour WHERE id = 1")).fetchone()
        b = Behaviour.model_validate(row[0] if row else {})
        self._behaviour = (time.monotonic(), b)
        return b

    async def set_behaviour(self, b: Behaviour) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE behaviour SET config = %s WHERE id = 1", (Jsonb(b.model_dump()),))
        self._behaviour = (time.monotonic(), b)

    async def request_to_pay(self, req: RtpRequest) -> tuple[int, dict[str, Any]]:
        now = self.now()
        behaviour = await self.behaviour()
        mode = behaviour.accounts.get(req.channel.account, behaviour.default)
        ref = "SW" + secrets.token_hex(8).upper()
        status, reason, decided = "pending", None, None
        if req.expires_at <= now:
            status, reason, decided = "declined", "expired", now
        elif mode in ("approve", "duplicate"):
            status, decided = "approved", now
        elif mode == "decline":
            status, reason, decided = "declined", "insufficient funds", now
        payload = {"event_id": "EV" + secrets.token_hex(8).upper(), "rtp_id": req.rtp_id, "switch_ref": ref,
                   "status": status, "amount": req.amount, "currency": req.currency, "reason": reason,
                   "decided_at": now.isoformat()}
        copies = 0 if status == "pending" else 2 if mode == "duplicate" else 1
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "WITH r AS (INSERT INTO rtp (rtp_id, switch_ref, amount, currency, channel_kind, provider, account,"
                " payee, expires_at, status, reason, created_at, decided_at)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (rtp_id) DO NOTHING RETURNING rtp_id),"
                " o AS (INSERT INTO outbox (rtp_id, payload, next_at)"
                " SELECT r.rtp_id, %s, %s FROM r, generate_series(1, %s))"
                " SELECT rtp_id FROM r",
                (req.rtp_id, ref, req.amount, req.currency, req.channel.kind, req.channel.provider, req.channel.account,
                 req.payee, req.expires_at, status, reason, now, decided, Jsonb(payload), now, copies))
            if await cur.fetchone():
                if copies:
                    self.wake.set()
                return 202, {"rtp_id": req.rtp_id, "switch_ref": ref, "status": "pending"}
            old = await (await conn.execute("SELECT switch_ref, amount, currency, account, payee FROM rtp"
                                            " WHERE rtp_id = %s", (req.rtp_id,))).fetchone()
        assert old is not None
        if tuple(old[1:]) != (req.amount, req.currency, req.channel.account, req.payee):
            return 409, {"title": "rtp_id reused with different content"}
        return 200, {"rtp_id": req.rtp_id, "switch_ref": old[0], "status": "pending"}

    async def status(self, rtp_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT rtp_id, switch_ref, status, amount, currency, reason, decided_at FROM rtp"
                              " WHERE rtp_id = %s", (rtp_id,))
            row = await cur.fetchone()
        if row and row["decided_at"]:
            row["decided_at"] = row["decided_at"].isoformat()
        return row

    async def settlement_csv(self, day: date) -> str:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT switch_ref, rtp_id, coalesce(settled_amount, amount), currency, status, decided_at FROM rtp"
                " WHERE status = 'approved' AND in_settlement AND decided_at >= %s AND decided_at < %s"
                " ORDER BY decided_at, switch_ref", (start, start + timedelta(days=1)))).fetchall()
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["switch_ref", "rtp_id", "amount", "currency", "status", "decided_at"])
        for ref, rtp_id, amount, currency, status, decided in rows:
            w.writerow([ref, rtp_id, amount, currency, status, decided.astimezone(UTC).isoformat()])
        return out.getvalue()

    async def patch(self, rtp_id: str, p: RtpPatch) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE rtp SET settled_amount = coalesce(%s, settled_amount),"
                " in_settlement = coalesce(%s, in_settlement) WHERE rtp_id = %s",
                (p.settled_amount, p.in_settlement, rtp_id))
            return cur.rowcount == 1

    async def _deliver(self, payload: dict[str, Any], now: datetime) -> str | None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json",
                   signing.HEADER: signing.sign(self.cfg.key, "POST", CALLBACK_PATH, body, now.timestamp())}
        try:
            resp = await self.cfg.payment.post(CALLBACK_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if resp.status_code < 300 else f"HTTP {resp.status_code}: {resp.text[:200]}"

    async def dispatch_due(self, limit: int = 128, parallel: int = 64) -> dict[str, int]:
        """Deliver due callbacks once, up to ``parallel`` at a time; failures back off exponentially (1 s, 2 s, 4 s
        ... 300 s). Copies of one event (duplicate mode) go out one after the other, as separate deliveries."""
        now = self.now()
        sem = asyncio.Semaphore(parallel)

        async def one(payload: dict[str, Any]) -> str | None:
            async with sem:
                return await self._deliver(payload, now)

        async with self.pool.connection() as conn, conn.transaction():
            rows = await (await conn.execute(
                "SELECT id, payload, attempts FROM outbox WHERE delivered_at IS NULL AND next_at <= %s"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit))).fetchall()
            errors = list(await asyncio.gather(*(one(payload) for _, payload, _ in rows)))
            ok = [oid for (oid, _, _), err in zip(rows, errors, strict=True) if err is None]
            bad = [(now + timedelta(seconds=min(2 ** attempts, MAX_BACKOFF_S)), err, oid)
                   for (oid, _, attempts), err in zip(rows, errors, strict=True) if err is not None]
            if ok:
                await conn.execute("UPDATE outbox SET delivered_at = %s, attempts = attempts + 1 WHERE id = ANY(%s)",
                                   (now, ok))
            if bad:
                async with conn.cursor() as cur:
                    await cur.executemany("UPDATE outbox SET attempts = attempts + 1, next_at = %s, last_error = %s"
                                          " WHERE id = %s", bad)
        return {"delivered": len(ok), "failed": len(bad)}


def build_app(cfg: SwitchConfig) -> FastAPI:
    sw = Switch(cfg)

    async def db_check() -> str | None:
        async with sw.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await sw.open()
        try:
            async with background((lambda: _dispatcher(sw)) if cfg.run_dispatcher else None):
                yield
        finally:
            await sw.close()

    app = create_app("switch", checks={"database": db_check}, lifespan=lifespan)
    app.state.switch = sw

    async def authentic(request: Request) -> tuple[bytes, JSONResponse | None]:
        body = await request.body()
        reason = signing.verify(cfg.key, request.headers.get(signing.HEADER), request.method, request.url.path, body,
                                sw.now().timestamp())
        return body, (problem(401, "unauthenticated", reason) if reason else None)

    def admin(request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {cfg.admin_token}":
            return problem(401, "unauthenticated", "admin token required")
        return None

    @app.post("/v1/rtp")
    async def rtp(request: Request) -> Response:
        body, denied = await authentic(request)
        if denied:
            return denied
        try:
            req = RtpRequest.model_validate_json(body)
        except ValidationError as exc:
            return problem(422, "invalid request", str(exc.errors(include_url=False)))
        status, doc = await sw.request_to_pay(req)
        if status == 409:
            return problem(409, doc["title"])
        return JSONResponse(doc, status_code=status)

    @app.get("/v1/rtp/{rtp_id}")
    async def rtp_status(rtp_id: str, request: Request) -> Response:
        _, denied = await authentic(request)
        if denied:
            return denied
        doc = await sw.status(rtp_id)
        return JSONResponse(doc) if doc else problem(404, "unknown rtp_id")

    @app.get("/v1/settlements/{day}")
    async def settlement(day: date, request: Request) -> Response:
        _, denied = await authentic(request)
        if denied:
            return denied
        text = (await sw.settlement_csv(day)).encode()
        sig = signing.sign(cfg.key, "GET", request.url.path, text, sw.now().timestamp())
        return Response(text, media_type="text/csv", headers={signing.HEADER: sig})

    @app.get("/v1/sim/behaviour")
    async def get_behaviour(request: Request) -> Response:
        return admin(request) or JSONResponse((await sw.behaviour()).model_dump())

    @app.put("/v1/sim/behaviour")
    async def put_behaviour(b: Behaviour, request: Request) -> Response:
        if denied := admin(request):
            return denied
        await sw.set_behaviour(b)
        return JSONResponse(b.model_dump())

    @app.patch("/v1/sim/rtp/{rtp_id}")
    async def patch_rtp(rtp_id: str, p: RtpPatch, request: Request) -> Response:
        if denied := admin(request):
            return denied
        return Response(status_code=204) if await sw.patch(rtp_id, p) else problem(404, "unknown rtp_id")

    @app.post("/v1/sim/dispatch")
    async def dispatch(request: Request) -> Response:
        return admin(request) or JSONResponse(await sw.dispatch_due())

    return app


async def _dispatcher(sw: Switch, loops: int = 2) -> None:
    """Deliver callbacks as soon as this process queued one (woken by the request to pay), else every
    ``dispatch_interval_s`` (callbacks queued by another worker, retries). ``loops`` batches go out at once so that
    one slow batch does not hold back the next; every uvicorn worker runs its own - ``FOR UPDATE SKIP LOCKED`` gives
    each row to one of them."""

    async def loop() -> None:
        while True:
            sw.wake.clear()
            try:
                got = await sw.dispatch_due()
            except Exception:  # keep delivering after transient database or network faults
                log.exception("callback dispatch failed")
                got = {"delivered": 0}
            if not got["delivered"]:  # nothing due: sleep until woken or the interval (a full batch: look again)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sw.wake.wait(), sw.cfg.dispatch_interval_s)

    await asyncio.gather(*(loop() for _ in range(loops)))
