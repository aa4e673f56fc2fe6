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
from govcloud_common import rawroute, signing
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
MAX_BATCH = 500  # requests to pay per batch request


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
    callback_batch: int = 1  # decisions per callback POST: 1 = the single form, N > 1 = batches of up to N
    pool: AsyncConnectionPool | None = field(default=None, repr=False)


def problem(status: int, title: str, detail: str = "") -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


# Requests to pay as one statement: the rows travel as one JSON parameter (jsonb_to_recordset); a decision already
# taken is queued in the callback outbox (twice in duplicate mode) for the requests actually inserted.
RTP_INSERT = """
WITH u AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s) AS u(rtp_id text, switch_ref text, amount bigint, currency text,
        channel_kind text, provider text, account text, payee text, expires_at timestamptz, status text, reason text,
        decided_at timestamptz, payload jsonb, copies int)
), r AS (
    INSERT INTO rtp (rtp_id, switch_ref, amount, currency, channel_kind, provider, account, payee, expires_at, status,
                     reason, created_at, decided_at)
    SELECT rtp_id, switch_ref, amount, currency, channel_kind, provider, account, payee, expires_at, status, reason,
           %(now)s, decided_at FROM u
    ON CONFLICT (rtp_id) DO NOTHING RETURNING rtp_id
), o AS (
    INSERT INTO outbox (rtp_id, payload, next_at)
    SELECT u.rtp_id, u.payload, %(now)s FROM r JOIN u ON u.rtp_id = r.rtp_id, generate_series(1, u.copies)
)
SELECT rtp_id FROM r
"""


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
        return (await self.request_to_pay_many([req]))[0]

    async def request_to_pay_many(self, reqs: list[RtpRequest]) -> list[tuple[int, dict[str, Any]]]:
        """Record requests to pay (and queue the decisions already taken) in one statement; per request
        ``(202 | 200 | 409, answer)`` in order. A repeated ``rtp_id`` is answered as a retry of the first."""
        now = self.now()
        behaviour = await self.behaviour()
        rows: list[dict[str, Any]] = []
        first: dict[str, int] = {}
        for i, req in enumerate(reqs):
            if req.rtp_id in first:
                continue
            first[req.rtp_id] = i
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
            rows.append({"rtp_id": req.rtp_id, "switch_ref": ref, "amount": req.amount, "currency": req.currency,
                         "channel_kind": req.channel.kind, "provider": req.channel.provider,
                         "account": req.channel.account, "payee": req.payee, "expires_at": req.expires_at.isoformat(),
                         "status": status, "reason": reason, "decided_at": decided.isoformat() if decided else None,
                         "payload": payload, "copies": 0 if status == "pending" else 2 if mode == "duplicate" else 1})
        async with self.pool.connection() as conn:
            cur = await conn.execute(RTP_INSERT, {"rows": Jsonb(rows), "now": now}, prepare=True)
            created = {r[0] for r in await cur.fetchall()}
            again = [r["rtp_id"] for r in rows if r["rtp_id"] not in created] + \
                [req.rtp_id for i, req in enumerate(reqs) if first[req.rtp_id] != i]
            old = {}
            if again:
                old = {r[0]: r[1:] for r in await (await conn.execute(
                    "SELECT rtp_id, switch_ref, amount, currency, account, payee FROM rtp WHERE rtp_id = ANY(%s)",
                    (again,))).fetchall()}
        if any(r["copies"] and r["rtp_id"] in created for r in rows):
            self.wake.set()
        by_id = {r["rtp_id"]: r for r in rows}
        out: list[tuple[int, dict[str, Any]]] = []
        for i, req in enumerate(reqs):
            if first[req.rtp_id] == i and req.rtp_id in created:
                out.append((202, {"rtp_id": req.rtp_id, "switch_ref": by_id[req.rtp_id]["switch_ref"],
                                  "status": "pending"}))
                continue
            was = old[req.rtp_id]
            if tuple(was[1:]) != (req.amount, req.currency, req.channel.account, req.payee):
                out.append((409, {"title": "rtp_id reused with different content"}))
            else:
                out.append((200, {"rtp_id": req.rtp_id, "switch_ref": was[0], "status": "pending"}))
        return out

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

    async def _post(self, body: bytes, now: datetime) -> tuple[str | None, Any]:
        """POST one callback body (signed); (None, the answer's JSON or None) when acknowledged, else (the error,
        None)."""
        headers = {"content-type": "application/json",
                   signing.HEADER: signing.sign(self.cfg.key, "POST", CALLBACK_PATH, body, now.timestamp())}
        try:
            resp = await self.cfg.payment.post(CALLBACK_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", None
        if resp.status_code >= 300:
            return f"HTTP {resp.status_code}: {resp.text[:200]}", None
        try:
            return None, resp.json()
        except ValueError:
            return None, None

    async def _deliver(self, payload: dict[str, Any], now: datetime) -> str | None:
        return (await self._post(json.dumps(payload, separators=(",", ":")).encode(), now))[0]

    async def _deliver_batch(self, payloads: list[dict[str, Any]], now: datetime) -> list[str | None]:
        """One POST ``{"events": [...]}`` (PROTOCOL.md §2, batch form): per event None when acknowledged - the whole
        POST answered 2xx and its ``results`` do not list the event with a status >= 300 - else the error."""
        err, doc = await self._post(json.dumps({"events": payloads}, separators=(",", ":")).encode(), now)
        if err is not None:
            return [err] * len(payloads)
        refused: dict[str, str] = {}
        results = doc.get("results") if isinstance(doc, dict) else None
        for r in results if isinstance(results, list) else []:
            if isinstance(r, dict) and isinstance(r.get("status"), int) and r["status"] >= 300:
                refused[str(r.get("event_id"))] = f"HTTP {r['status']} (in batch): {str(r.get('title', ''))[:200]}"
        return [refused.get(p["event_id"]) for p in payloads]

    async def dispatch_due(self, limit: int = 128, parallel: int = 64) -> dict[str, int]:
        """Deliver due callbacks once, up to ``parallel`` POSTs at a time; failures back off exponentially (1 s, 2 s,
        4 s ... 300 s). With ``callback_batch`` > 1 the due decisions go out in batches of up to that many per POST;
        copies of one event (duplicate mode) always go out one after the other, as separate deliveries."""
        now = self.now()
        sem = asyncio.Semaphore(parallel)
        size = max(1, self.cfg.callback_batch)

        async with self.pool.connection() as conn, conn.transaction():
            rows = await (await conn.execute(
                "SELECT id, payload, attempts FROM outbox WHERE delivered_at IS NULL AND next_at <= %s"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit), prepare=True)).fetchall()
            errors: list[str | None] = [None] * len(rows)

            async def one(batch: list[int]) -> None:
                async with sem:
                    if size == 1:
                        errors[batch[0]] = await self._deliver(rows[batch[0]][1], now)
                        return
                    got = await self._deliver_batch([rows[i][1] for i in batch], now)
                    for i, err in zip(batch, got, strict=True):
                        errors[i] = err

            todo = list(range(len(rows)))
            while todo:  # rounds: each event once per round, so a copy goes out after its first delivery
                seen: set[str] = set()
                current: list[int] = []
                later: list[int] = []
                for i in todo:
                    event = rows[i][1]["event_id"]
                    (later if event in seen else current).append(i)
                    seen.add(event)
                await asyncio.gather(*(one(current[k:k + size]) for k in range(0, len(current), size)))
                todo = later
            ok = [oid for (oid, _, _), err in zip(rows, errors, strict=True) if err is None]
            bad = [(now + timedelta(seconds=min(2 ** attempts, MAX_BACKOFF_S)), err, oid)
                   for (oid, _, attempts), err in zip(rows, errors, strict=True) if err is not None]
            if ok:
                await conn.execute("UPDATE outbox SET delivered_at = %s, attempts = attempts + 1 WHERE id = ANY(%s)",
                                   (now, ok), prepare=True)
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
        """Described in the OpenAPI document; served by ``rtp_raw`` (a plain ASGI handler, same answers)."""
        body, denied = await authentic(request)
        if denied:
            return denied
        return await rtp_answer(body)

    async def rtp_raw(scope: rawroute.Scope, receive: rawroute.Receive, send: rawroute.Send) -> None:
        body = await rawroute.read_body(receive)
        reason = signing.verify(cfg.key, rawroute.header(scope, b"x-switch-signature"), "POST", scope["path"], body,
                                sw.now().timestamp())
        answer = problem(401, "unauthenticated", reason) if reason else await rtp_answer(body)
        await rawroute.respond(send, answer.status_code, bytes(answer.body),
                               answer.headers["content-type"].encode("latin-1"))

    rawroute.add_raw_route(app, "/v1/rtp", "POST", rtp_raw)

    async def rtp_answer(body: bytes) -> JSONResponse:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            return problem(422, "invalid request", f"malformed JSON: {exc}")
        if isinstance(doc, dict) and "requests" in doc:  # the batch form: an answer per request, in order
            items = doc["requests"]
            if set(doc) != {"requests"} or not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
                return problem(422, "invalid request", f'a batch is {{"requests": [1..{MAX_BATCH} requests]}}')
            results: list[dict[str, Any] | None] = [None] * len(items)
            valid: list[tuple[int, RtpRequest]] = []
            for i, item in enumerate(items):
                try:
                    valid.append((i, RtpRequest.model_validate(item)))
                except ValidationError as exc:
                    results[i] = {"rtp_id": item.get("rtp_id") if isinstance(item, dict) else None, "code": 422,
                                  "title": "invalid request", "detail": str(exc.errors(include_url=False))}
            answers = await sw.request_to_pay_many([r for _, r in valid]) if valid else []
            for (i, req), (code, answer) in zip(valid, answers, strict=True):
                results[i] = {"code": code, **answer} if code != 409 else \
                    {"rtp_id": req.rtp_id, "code": 409, "title": answer["title"]}
            return JSONResponse({"results": results})
        try:
            req = RtpRequest.model_validate(doc)
        except ValidationError as exc:
            return problem(422, "invalid request", str(exc.errors(include_url=False)))
        status, answer = await sw.request_to_pay(req)
        if status == 409:
            return problem(409, answer["title"])
        return JSONResponse(answer, status_code=status)

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
