"""The payment gateway's logic: orders, the switch protocol, callbacks, expiry, receipts, reconciliation."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import httpx
import orjson
import psycopg
from govcloud_common import signing
from prometheus_client import Counter, Histogram
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from payment import ledger, notify
from payment.fees import FeeSource, FeeSourceError, UnknownService
from payment.receipts import ReceiptSigner, make_receipt

log = logging.getLogger("payment")
Clock = Callable[[], datetime]
CALLBACK_PATH = "/api/switch/callbacks"
BILL_REF = r"^[A-Z]{2,6}-[A-Za-z0-9]{1,32}$"
SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
TEXT = r"^[^\x00-\x1f\x7f]+$"  # printable text: no control characters (and no NUL, which PostgreSQL refuses)
ORDER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 42))"  # serialises create and callbacks

ORDERS = Counter("payment_orders_total", "Payment orders reaching a state", ["state"])
PAY_LATENCY = Histogram("payment_order_paid_seconds", "Order creation to paid", buckets=(
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 5400))


def utcnow() -> datetime:
    return datetime.now(UTC)


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["fee", "bill"]
    service_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    bill_reference: str | None = Field(None, pattern=BILL_REF)
    channel: str = Field(pattern=SLUG)
    payer_account: str = Field(pattern=r"^[A-Za-z0-9+\-]{4,34}$")

    @model_validator(mode="after")
    def _target(self) -> OrderRequest:
        if self.kind == "fee" and (not self.service_id or self.bill_reference):
            raise ValueError("a fee order names service_id (and no bill_reference)")
        if self.kind == "bill" and (not self.bill_reference or self.service_id):
            raise ValueError("a bill order names bill_reference (and no service_id)")
        return self


class Callback(BaseModel):
    event_id: str = Field(min_length=1, max_length=64)
    rtp_id: str = Field(min_length=1, max_length=64)
    switch_ref: str = Field(min_length=1, max_length=64)
    status: Literal["approved", "declined"]
    amount: int = Field(gt=0, strict=True)
    currency: Literal["SYP"]
    reason: str | None = None
    decided_at: datetime


@dataclass
class _Create:
    """A fee-order create waiting for its group (Gateway._create_grouped)."""
    key: str
    digest: str
    req: OrderRequest
    order_id: str
    fut: asyncio.Future[tuple[int, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Bill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(pattern=BILL_REF)
    customer: str = Field(min_length=1, max_length=128, pattern=TEXT)
    amount_due: int = Field(gt=0, le=10**13, strict=True)
    due_date: date | None = None


@dataclass
class PaymentConfig:
    conninfo: str
    key: str                       # HMAC key shared with the switch ("callback-key")
    admin_token: str
    switch: httpx.AsyncClient      # base_url = the switch
    fees: FeeSource
    signer: ReceiptSigner
    clock: Clock = utcnow
    order_ttl: timedelta = timedelta(minutes=90)
    pool_max: int = 8
    run_workers: bool = False
    worker_interval_s: float = 5.0
    notify: notify.NotifyConfig | None = None
    rtp_batch: int = 64            # requests to pay coalesced into one request to the switch (1 = single form only)
    rtp_flights: int = 1           # requests to the switch in flight at once; creates arriving meanwhile wait
    create_batch: int = 64         # concurrent fee-order creates sharing one transaction (1 = each its own)
    create_flights: int = 1        # such groups in flight at once; creates arriving meanwhile wait for the next
    pool: AsyncConnectionPool | None = field(default=None, repr=False)


def _iso(v: datetime | None) -> str | None:
    return v.astimezone(UTC).isoformat() if v else None


def _order_doc(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "kind": r["kind"], "service_id": r["service_id"], "bill_reference": r["bill_reference"],
            "payee": r["payee"], "amount": r["amount"], "currency": r["currency"], "channel": r["channel"],
            "payer_account": r["payer_account"], "status": r["status"], "reason": r["reason"],
            "switch_ref": r["switch_ref"], "created_at": _iso(r["created_at"]), "expires_at": _iso(r["expires_at"]),
            "closed_at": _iso(r["closed_at"])}


def receipt_fields(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"receipt_id": "R" + row["id"][2:], "order_id": row["id"], "kind": row["kind"],
            "service_id": row["service_id"], "bill_reference": row["bill_reference"], "payee": row["payee"],
            "amount": row["amount"], "currency": row["currency"], "channel": row["channel"],
            "payer_account": "*" * (len(row["payer_account"]) - 4) + row["payer_account"][-4:],
            "switch_ref": row["switch_ref"], "paid_at": now.isoformat(), "issuer": "govcloud payment gateway"}


# The usual approvals of pending fee orders - one, or a batch of callbacks - as ONE autocommit statement (no
# BEGIN/COMMIT round trips): per order its state, the ledger's commit, the signed receipt, the notifications and the
# event's record, or nothing at all for that order. The rows travel as one JSON parameter (jsonb_to_recordset). The
# UPDATE's conditions are those under which the general path (Gateway._decision) would pay; an order for which they
# do not hold (not visible yet because its create has not committed, already closed, mismatching, late, a bill
# order, an event seen before) is left alone and the general path decides it. Concurrent decisions on one order
# queue on its row lock (UPDATE) as the general path's SELECT ... FOR UPDATE does; a copy of an event applied
# concurrently makes the callbacks insert fail, undoing the statement (each of its events then takes the general
# path). The caller passes at most one event per order.
FAST_PAID = """
WITH u AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s) AS u(id text, ref text, amount bigint, decided timestamptz, event text,
        payload jsonb, r_payload text, r_signature text, legs jsonb, notes jsonb, opened jsonb)
), upd AS (
    UPDATE orders o SET status = 'paid', closed_at = %(now)s FROM u
    WHERE o.id = u.id AND o.status = 'pending' AND o.kind = 'fee' AND o.switch_ref = u.ref
      AND o.amount = u.amount AND o.expires_at >= u.decided
      AND NOT EXISTS (SELECT 1 FROM callbacks c WHERE c.event_id = u.event)
    RETURNING o.id, o.created_at, u.event, u.payload, u.r_payload, u.r_signature, u.legs, u.notes, u.opened
), opened AS (
    INSERT INTO accounts (id, normal, no_overdraft, tracked)
    SELECT DISTINCT a.* FROM upd,
        jsonb_to_recordset(upd.opened) AS a(id text, normal text, no_overdraft bool, tracked bool)
    ON CONFLICT DO NOTHING
), tx AS (
    INSERT INTO ledger_tx (order_id, kind, created_at) SELECT id, 'commit', %(now)s FROM upd RETURNING id, order_id
), posted AS (
    INSERT INTO entries (tx_id, account, amount)
    SELECT tx.id, l.account, l.amount FROM tx JOIN upd ON upd.id = tx.order_id,
        jsonb_to_recordset(upd.legs) AS l(account text, amount bigint)
), receipt AS (
    INSERT INTO receipts (order_id, payload, signature, algorithm, chain)
    SELECT id, r_payload, r_signature, %(r_algorithm)s, %(r_chain)s FROM upd
), notified AS (
    INSERT INTO notifications (target, url, event, order_id, payload, next_at)
    SELECT n.target, n.url, n.event, upd.id, n.payload, %(now)s FROM upd,
        jsonb_to_recordset(upd.notes) AS n(target text, url text, event text, payload jsonb)
), recorded AS (
    INSERT INTO callbacks (event_id, rtp_id, payload, result, received_at)
    SELECT event, id, payload, 'paid', %(now)s FROM upd
)
SELECT id, created_at FROM upd
"""
# An order's create: the key claimed under the order's advisory lock (held until COMMIT, after the switch's answer),
# the channel, and an answer stored before - one statement.
CLAIM = """
WITH l AS (SELECT pg_advisory_xact_lock(hashtextextended(%(oid)s, 42))
), ins AS (
    INSERT INTO idempotency (scope, key, body_hash, created_at) SELECT 'orders', %(key)s, %(digest)s, %(now)s FROM l
    ON CONFLICT DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins), i.body_hash, i.status, i.response, c.kind
FROM (SELECT 1) one
LEFT JOIN idempotency i ON i.scope = 'orders' AND i.key = %(key)s AND i.status IS NOT NULL
LEFT JOIN channels c ON c.id = %(channel)s AND c.enabled
"""
# ... then, once the switch accepted the request to pay: the order, its reservation in the ledger (the legs of
# ledger.reserve_legs) and the stored answer - one statement, then COMMIT.
OPEN_ORDER = """
WITH ord AS (
    INSERT INTO orders (id, kind, service_id, bill_reference, payee, amount, currency, channel, payer_account, status,
                        switch_ref, created_at, expires_at, body)
    VALUES (%(id)s, %(kind)s, %(service_id)s, %(bill_reference)s, %(payee)s, %(amount)s, 'SYP', %(channel)s,
            %(payer_account)s, 'pending', %(switch_ref)s, %(now)s, %(expires)s, %(body)s)
    RETURNING id
), opened AS (
    INSERT INTO accounts (id, normal, no_overdraft, tracked)
    SELECT u.* FROM ord, jsonb_to_recordset(%(opened)s) AS u(id text, normal text, no_overdraft bool, tracked bool)
    ON CONFLICT DO NOTHING
), tx AS (
    INSERT INTO ledger_tx (order_id, kind, created_at) SELECT id, 'reserve', %(now)s FROM ord RETURNING id
), posted AS (
    INSERT INTO entries (tx_id, account, amount)
    SELECT tx.id, u.account, u.amount FROM tx, jsonb_to_recordset(%(legs)s) AS u(account text, amount bigint)
)
UPDATE idempotency SET status = 201, response = %(response)s WHERE scope = 'orders' AND key = %(key)s
"""
# Concurrent fee-order creates in one transaction: every key claimed under its order's advisory lock, taken in
# order id order (two groups never wait on each other in a cycle), with the channel and a stored answer ...
CLAIM_MANY = """
WITH u AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s) AS u(i int, order_id text, key text, digest text, channel text)
), l AS (
    SELECT pg_advisory_xact_lock(hashtextextended(order_id, 42)) FROM u ORDER BY order_id
), ins AS (
    INSERT INTO idempotency (scope, key, body_hash, created_at)
    SELECT 'orders', u.key, u.digest, %(now)s FROM u WHERE (SELECT count(*) FROM l) > 0
    ON CONFLICT DO NOTHING RETURNING key
)
SELECT u.i, EXISTS (SELECT 1 FROM ins WHERE ins.key = u.key), i.body_hash, i.status, i.response, c.kind
FROM u
LEFT JOIN idempotency i ON i.scope = 'orders' AND i.key = u.key AND i.status IS NOT NULL
LEFT JOIN channels c ON c.id = u.channel AND c.enabled
"""
# ... then, after one request to the switch: the orders, their reservations (the legs of ledger.reserve_legs) and
# stored answers, and the claims of the creates that failed withdrawn - one statement, then COMMIT.
OPEN_ORDERS = """
WITH u AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s) AS u(id text, service_id text, payee text, amount bigint, channel text,
        payer_account text, switch_ref text, body text, key text, response text, legs jsonb, opened jsonb)
), ord AS (
    INSERT INTO orders (id, kind, service_id, bill_reference, payee, amount, currency, channel, payer_account, status,
                        switch_ref, created_at, expires_at, body)
    SELECT id, 'fee', service_id, NULL, payee, amount, 'SYP', channel, payer_account, 'pending', switch_ref, %(now)s,
           %(expires)s, body FROM u
    RETURNING id
), opened AS (
    INSERT INTO accounts (id, normal, no_overdraft, tracked)
    SELECT DISTINCT a.* FROM u JOIN ord ON ord.id = u.id,
        jsonb_to_recordset(u.opened) AS a(id text, normal text, no_overdraft bool, tracked bool)
    ON CONFLICT DO NOTHING
), tx AS (
    INSERT INTO ledger_tx (order_id, kind, created_at) SELECT id, 'reserve', %(now)s FROM ord RETURNING id, order_id
), posted AS (
    INSERT INTO entries (tx_id, account, amount)
    SELECT tx.id, l.account, l.amount FROM tx JOIN u ON u.id = tx.order_id,
        jsonb_to_recordset(u.legs) AS l(account text, amount bigint)
), withdrawn AS (
    DELETE FROM idempotency WHERE scope = 'orders' AND key = ANY(%(undo)s) AND status IS NULL
)
UPDATE idempotency i SET status = 201, response = u.response FROM u WHERE i.scope = 'orders' AND i.key = u.key
"""
MAX_BATCH = 500  # decisions per batch callback
SINGLE_FORM_S = 600.0  # after the switch refused the batch form of requests to pay: single form this long
RECENT_MAX = 10_000  # orders created here whose (immutable) fields the fast paid path reuses (~2 KB each)


# Rows for the statements above travel as one JSON parameter each (jsonb_to_recordset): psycopg dumps a list of
# text or bigint in Python, ~10x the CPU of one json.dumps (orjson: a fraction of that again).
def _legs(legs: list[tuple[str, int]]) -> Jsonb:
    return Jsonb([{"account": a, "amount": m} for a, m in legs], dumps=_dumps)


def _opened(opened: list[tuple[str, str, bool, bool]]) -> Jsonb:
    return Jsonb([{"id": i, "normal": n, "no_overdraft": o, "tracked": t} for i, n, o, t in opened], dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def body_hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


SETTLEMENT_COLUMNS = ("switch_ref", "rtp_id", "amount")


class SettlementError(ValueError):
    pass


def parse_settlement(text: str) -> list[dict[str, Any]]:
    """The settlement CSV (PROTOCOL.md §4) as rows ``{switch_ref, rtp_id, amount: int, line}``; the first problem
    found is raised naming its line and column."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in SETTLEMENT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise SettlementError(f"line 1: header lacks column(s) {', '.join(missing)} (expected "
                              "switch_ref,rtp_id,amount,currency,status,decided_at)")
    rows: list[dict[str, Any]] = []
    for row in reader:
        line = reader.line_num
        if None in row or any(row.get(c) is None for c in SETTLEMENT_COLUMNS):
            raise SettlementError(f"line {line}: expected {len(reader.fieldnames or [])} fields")
        raw = (row["amount"] or "").strip()
        if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
            raise SettlementError(f"line {line}: amount {raw!r} is not a positive integer in minor units")
        if row.get("currency", "SYP") != "SYP":
            raise SettlementError(f"line {line}: currency {row['currency']!r} is not SYP")
        for col in ("switch_ref", "rtp_id"):
            if not row[col] or len(row[col]) > 64:
                raise SettlementError(f"line {line}: {col} is empty or longer than 64 characters")
        rows.append({"switch_ref": row["switch_ref"], "rtp_id": row["rtp_id"], "amount": int(raw), "line": line})
    return rows


class Gateway:
    def __init__(self, cfg: PaymentConfig) -> None:
        self.cfg = cfg
        self.pool = cfg.pool or AsyncConnectionPool(cfg.conninfo, min_size=1, max_size=cfg.pool_max, open=False)
        self.notifier = notify.Notifier(self.pool, cfg.notify) if cfg.notify else None
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()  # order id -> the order as created here
        self.fast_paid = True  # approvals of pending fee orders in one statement (FAST_PAID); False: general path only
        self._rtp_waiting: list[tuple[dict[str, Any], asyncio.Future[str]]] = []  # creates waiting for the switch
        self._rtp_flights = 0
        self._rtp_tasks: set[asyncio.Task[None]] = set()
        self._rtp_single_until = 0.0  # monotonic time until which requests to pay go in the single form only
        self._create_waiting: list[_Create] = []  # fee-order creates waiting for the next group
        self._create_flights = 0
        self._create_tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    def now(self) -> datetime:
        return self.cfg.clock()

    # -- catalogue --------------------------------------------------------------------------------------------------

    async def channels(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT id, kind, name, enabled FROM channels ORDER BY kind, id")
            return await cur.fetchall()

    async def put_channel(self, cid: str, kind: str, name: str, enabled: bool) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("INSERT INTO channels (id, kind, name, enabled) VALUES (%s, %s, %s, %s) ON CONFLICT (id)"
                               " DO UPDATE SET kind = excluded.kind, name = excluded.name, enabled = excluded.enabled",
                               (cid, kind, name, enabled))

    async def set_biller_notify(self, biller: str, url: str, secret: str) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("UPDATE billers SET notify_url = %s, notify_secret = %s WHERE id = %s",
                                     (url, secret, biller))
            if cur.rowcount != 1:
                raise ApiError(404, "unknown biller", biller)

    async def billers(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT id, kind, name, prefix FROM billers ORDER BY id")
            return await cur.fetchall()

    async def load_bills(self, bills: list[Bill]) -> int:
        refs = [b.reference for b in bills]
        if len(set(refs)) != len(refs):
            raise ApiError(422, "duplicate bill references", ", ".join(sorted({r for r in refs if refs.count(r) > 1})))
        async with self.pool.connection() as conn, conn.transaction():
            prefixes = {p: b for b, p in await (await conn.execute("SELECT id, prefix FROM billers")).fetchall()}
            unknown = sorted({b.reference for b in bills if b.reference.split("-", 1)[0] not in prefixes})
            if unknown:
                raise ApiError(422, "unknown biller prefix", ", ".join(unknown))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO bills (reference, biller_id, customer, amount_due, due_date)"
                    " VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (reference) DO UPDATE SET customer = excluded.customer,"
                    " amount_due = excluded.amount_due, due_date = excluded.due_date WHERE bills.paid_order IS NULL",
                    [(b.reference, prefixes[b.reference.split("-", 1)[0]], b.customer, b.amount_due, b.due_date)
                     for b in bills])
        return len(bills)

    async def bill_inquiry(self, reference: str, conn: psycopg.AsyncConnection[Any] | None = None) -> dict[str, Any]:
        if conn is None:
            async with self.pool.connection() as own:
                return await self.bill_inquiry(reference, own)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM billers WHERE prefix = %s", (reference.split("-", 1)[0],))
        biller = await cur.fetchone()
        if not biller:
            raise ApiError(404, "unknown biller", f"no biller has the prefix of {reference!r}")
        await cur.execute("SELECT * FROM bills WHERE reference = %s", (reference,))
        bill = await cur.fetchone()
        if not bill:
            raise ApiError(404, "unknown bill", reference)
        return {"reference": reference, "biller": {k: biller[k] for k in ("id", "kind", "name")},
                "customer": bill["customer"], "amount_due": bill["amount_due"], "currency": "SYP",
                "due_date": bill["due_date"].isoformat() if bill["due_date"] else None,
                "status": "paid" if bill["paid_order"] else "due", "paid_order": bill["paid_order"]}

    # -- orders -----------------------------------------------------------------------------------------------------

    async def create_order(self, key: str | None, raw: bytes) -> tuple[int, dict[str, Any]]:
        """A create: claim the key under the order's lock, look up the channel (and a stored answer), ask the switch,
        then write the order, its reservation in the ledger and the stored answer - one database transaction.
        Concurrent fee-order creates share one transaction (``_create_grouped``), bill orders each have their own."""
        if not key or len(key) > 255:
            raise ApiError(400, "Idempotency-Key required", "every create carries an Idempotency-Key header (1-255)")
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise ApiError(422, "malformed JSON", str(exc)) from None
        digest = body_hash(doc)
        try:
            req = OrderRequest.model_validate(doc)
        except ValidationError as exc:
            raise ApiError(422, "invalid order", json.dumps(exc.errors(include_url=False), default=str)) from None
        order_id = "PO" + hashlib.sha256(f"orders\0{key}".encode()).hexdigest()[:24]
        if req.kind == "fee" and self.cfg.create_batch > 1:
            return await self._create_grouped(_Create(key, digest, req, order_id))
        return await self._create_one(key, digest, req, order_id)

    async def _create_one(self, key: str, digest: str, req: OrderRequest, order_id: str) -> tuple[int, dict[str, Any]]:
        """One create in its own database transaction (bill orders; a fee order whose group failed)."""
        now = self.now()
        expires = now + self.cfg.order_ttl
        try:
            async with self.pool.connection() as conn, conn.transaction():
                # the order's lock first: the switch may call back before this transaction commits, and its
                # callback waits on this lock; a concurrent twin with the same key waits here too
                row = await (await conn.execute(CLAIM, {"oid": order_id, "key": key, "digest": digest, "now": now,
                                                        "channel": req.channel}, prepare=True)).fetchone()
                assert row is not None
                claimed, stored, channel_kind = row[0], row[1:4], row[4]
                if not claimed:  # answered before, or by a concurrent twin whose commit this statement's snapshot
                    if stored[0] is None:  # predates: look again, now that its lock is ours
                        found = await (await conn.execute(
                            "SELECT body_hash, status, response FROM idempotency WHERE scope = 'orders' AND key = %s"
                            " AND status IS NOT NULL", (key,))).fetchone()
                        if found is None:
                            raise ApiError(409, "Idempotency-Key in use", "retry with the same Idempotency-Key")
                        stored = found
                    return self._replay((stored[0], stored[1], json.loads(stored[2])), digest)
                if channel_kind is None:
                    raise ApiError(422, "unknown channel", req.channel)
                channel = {"id": req.channel, "kind": channel_kind}
                if req.kind == "fee":
                    assert req.service_id
                    try:
                        fee = await self.cfg.fees.fee(req.service_id)
                    except UnknownService:
                        raise ApiError(404, "unknown service", req.service_id) from None
                    except FeeSourceError as exc:
                        raise ApiError(502, "fee unavailable", str(exc)) from None
                    amount, payee, body = fee.amount, f"service:{req.service_id}", fee.body
                else:
                    assert req.bill_reference
                    bill = await self.bill_inquiry(req.bill_reference, conn)
                    if bill["status"] == "paid":
                        raise ApiError(409, "bill already paid", req.bill_reference)
                    amount, payee, body = bill["amount_due"], f"biller:{bill['biller']['id']}", None
                switch_ref = await self._request_to_pay(order_id, amount, channel, req.payer_account, payee, expires)
                response = _order_doc({
                    "id": order_id, "kind": req.kind, "service_id": req.service_id,
                    "bill_reference": req.bill_reference, "payee": payee, "amount": amount, "currency": "SYP",
                    "channel": req.channel, "payer_account": req.payer_account, "status": "pending",
                    "reason": None, "switch_ref": switch_ref, "created_at": now, "expires_at": expires,
                    "closed_at": None})
                legs, opened = ledger.reserve_legs(order_id, amount)
                # a second open order for one bill violates orders_one_per_bill: the whole transaction is undone
                await conn.execute(OPEN_ORDER, {
                    "id": order_id, "kind": req.kind, "service_id": req.service_id,
                    "bill_reference": req.bill_reference, "payee": payee, "amount": amount, "channel": req.channel,
                    "payer_account": req.payer_account, "switch_ref": switch_ref, "now": now, "expires": expires,
                    "body": body, "opened": _opened(opened), "legs": _legs(legs),
                    "response": _dumps(response), "key": key}, prepare=True)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "orders_one_per_bill":
                raise
            raise ApiError(409, "bill already has an open or paid order", req.bill_reference or "") from None
        ORDERS.labels("pending").inc()
        self.recent[order_id] = {**response, "body": body}
        if len(self.recent) > RECENT_MAX:
            self.recent.popitem(last=False)
        return 201, response

    async def _create_grouped(self, item: _Create) -> tuple[int, dict[str, Any]]:
        """Natural batching of fee-order creates (no timer): while ``create_flights`` groups are in flight, the
        creates arriving wait, and then go together - one database transaction, one request to the switch."""
        self._create_waiting.append(item)
        if self._create_flights < self.cfg.create_flights:
            self._create_flights += 1
            task = asyncio.create_task(self._create_flush())
            self._create_tasks.add(task)
            task.add_done_callback(self._create_tasks.discard)
        return await item.fut

    async def _create_flush(self) -> None:
        try:
            while self._create_waiting:
                group: list[_Create] = []
                keys: set[str] = set()
                rest: list[_Create] = []
                for c in self._create_waiting:  # one create per key in a group: a twin waits for the next one
                    if len(group) < self.cfg.create_batch and c.key not in keys:
                        group.append(c)
                        keys.add(c.key)
                    else:
                        rest.append(c)
                self._create_waiting = rest
                try:
                    outcomes: list[tuple[int, dict[str, Any]] | ApiError] = await self._create_group(group)
                except Exception as exc:  # the group's transaction is undone: each create on its own
                    log.warning("grouped create of %d failed (%s: %s); each in its own transaction", len(group),
                                type(exc).__name__, exc, exc_info=not isinstance(exc, ApiError | psycopg.Error))
                    outcomes = list(await asyncio.gather(*(self._create_one_outcome(c) for c in group)))
                for c, outcome in zip(group, outcomes, strict=True):
                    if c.fut.done():  # its request was cancelled
                        continue
                    if isinstance(outcome, ApiError):
                        c.fut.set_exception(outcome)
                    else:
                        c.fut.set_result(outcome)
        finally:
            self._create_flights -= 1

    async def _create_one_outcome(self, c: _Create) -> tuple[int, dict[str, Any]] | ApiError:
        try:
            return await self._create_one(c.key, c.digest, c.req, c.order_id)
        except ApiError as exc:
            return exc
        except Exception:
            log.exception("create failed")
            return ApiError(500, "internal error", "retry with the same Idempotency-Key")

    async def _create_group(self, group: list[_Create]) -> list[tuple[int, dict[str, Any]] | ApiError]:
        """Fee-order creates in one transaction: every key claimed under its order's lock (taken in id order), one
        request to the switch, the orders with their reservations and stored answers in one statement; a create that
        fails (unknown channel or service, refused by the switch) has its claim withdrawn in that statement, so
        nothing of it is written - as when its own transaction is undone."""
        now = self.now()
        expires = now + self.cfg.order_ttl
        outcomes: list[tuple[int, dict[str, Any]] | ApiError | None] = [None] * len(group)
        undo: list[str] = []  # keys claimed here whose create failed

        def fail(i: int, exc: ApiError) -> None:
            outcomes[i] = exc
            undo.append(group[i].key)
        # the fees first, all at once and outside the transaction: a slow catalog must not hold the group's locks
        # once per create, one after another
        services = sorted({c.req.service_id for c in group if c.req.service_id})
        looked_up = await asyncio.gather(*(self.cfg.fees.fee(sid) for sid in services), return_exceptions=True)
        fees = dict(zip(services, looked_up, strict=True))
        async with self.pool.connection() as conn, conn.transaction():
            claims = await (await conn.execute(CLAIM_MANY, {"now": now, "rows": Jsonb(
                [{"i": i, "order_id": c.order_id, "key": c.key, "digest": c.digest, "channel": c.req.channel}
                 for i, c in enumerate(group)], dumps=_dumps)}, prepare=True)).fetchall()
            todo: list[tuple[int, str, dict[str, Any]]] = []  # (index, channel kind, fee)
            for i, claimed, stored_hash, stored_status, stored_response, channel_kind in claims:
                c = group[i]
                if not claimed:
                    stored = (stored_hash, stored_status, stored_response)
                    if stored_status is None:  # a concurrent twin elsewhere committed after this statement began
                        found = await (await conn.execute(
                            "SELECT body_hash, status, response FROM idempotency WHERE scope = 'orders' AND key = %s"
                            " AND status IS NOT NULL", (c.key,))).fetchone()
                        if found is None:
                            outcomes[i] = ApiError(409, "Idempotency-Key in use", "retry with the same Idempotency-Key")
                            continue
                        stored = found
                    try:
                        outcomes[i] = self._replay((stored[0], stored[1], json.loads(stored[2])), c.digest)
                    except ApiError as exc:
                        outcomes[i] = exc
                    continue
                if channel_kind is None:
                    fail(i, ApiError(422, "unknown channel", c.req.channel))
                    continue
                assert c.req.service_id
                fee = fees[c.req.service_id]
                if isinstance(fee, UnknownService):
                    fail(i, ApiError(404, "unknown service", c.req.service_id))
                    continue
                if isinstance(fee, FeeSourceError):
                    fail(i, ApiError(502, "fee unavailable", str(fee)))
                    continue
                if isinstance(fee, BaseException):
                    raise fee
                todo.append((i, channel_kind, {"amount": fee.amount, "body": fee.body}))
            items = [{"rtp_id": group[i].order_id, "amount": f["amount"], "currency": "SYP",
                      "channel": {"kind": kind, "provider": group[i].req.channel, "account": group[i].req.payer_account},
                      "payee": f"service:{group[i].req.service_id}", "expires_at": expires.isoformat()}
                     for i, kind, f in todo]
            refs: list[str | ApiError] = []
            if len(items) == 1:
                try:
                    refs = [await self._rtp_one(items[0])]
                except ApiError as exc:
                    refs = [exc]
            elif items:
                try:
                    refs = await self._rtp_many(items)
                except ApiError as exc:
                    refs = [exc] * len(items)
            rows: list[dict[str, Any]] = []
            made: list[tuple[int, dict[str, Any], str | None]] = []
            for (i, _, f), ref in zip(todo, refs, strict=True):
                c = group[i]
                if isinstance(ref, ApiError):
                    fail(i, ref)
                    continue
                payee = f"service:{c.req.service_id}"
                response = _order_doc({
                    "id": c.order_id, "kind": "fee", "service_id": c.req.service_id, "bill_reference": None,
                    "payee": payee, "amount": f["amount"], "currency": "SYP", "channel": c.req.channel,
                    "payer_account": c.req.payer_account, "status": "pending", "reason": None, "switch_ref": ref,
                    "created_at": now, "expires_at": expires, "closed_at": None})
                legs, opened = ledger.reserve_legs(c.order_id, f["amount"])
                rows.append({"id": c.order_id, "service_id": c.req.service_id, "payee": payee, "amount": f["amount"],
                             "channel": c.req.channel, "payer_account": c.req.payer_account, "switch_ref": ref,
                             "body": f["body"], "key": c.key, "response": _dumps(response),
                             "legs": [{"account": a, "amount": m} for a, m in legs],
                             "opened": [{"id": a, "normal": n, "no_overdraft": o, "tracked": t}
                                        for a, n, o, t in opened]})
                made.append((i, response, f["body"]))
            if rows or undo:
                await conn.execute(OPEN_ORDERS, {"rows": Jsonb(rows, dumps=_dumps), "undo": undo, "now": now,
                                                 "expires": expires}, prepare=True)
        for i, response, body in made:
            outcomes[i] = (201, response)
            ORDERS.labels("pending").inc()
            self.recent[response["id"]] = {**response, "body": body}
        while len(self.recent) > RECENT_MAX:
            self.recent.popitem(last=False)
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _replay(stored: tuple[str, int, Any], digest: str) -> tuple[int, dict[str, Any]]:
        if stored[0] != digest:
            raise ApiError(409, "Idempotency-Key reused with a different body")
        return stored[1], stored[2]

    async def _request_to_pay(self, order_id: str, amount: int, channel: dict[str, Any], account: str, payee: str,
                              expires: datetime) -> str:
        """The switch's reference for this request to pay. Concurrent creates are coalesced (natural batching, no
        timer): while ``rtp_flights`` requests to the switch are in flight, the creates arriving wait and all go in
        the next one - the batch form ``{"requests": [...]}`` (PROTOCOL.md §1) when more than one waits."""
        item = {"rtp_id": order_id, "amount": amount, "currency": "SYP",
                "channel": {"kind": channel["kind"], "provider": channel["id"], "account": account},
                "payee": payee, "expires_at": expires.isoformat()}
        if self.cfg.rtp_batch <= 1:
            return await self._rtp_one(item)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._rtp_waiting.append((item, fut))
        if self._rtp_flights < self.cfg.rtp_flights:
            self._rtp_flights += 1
            task = asyncio.create_task(self._rtp_flush())
            self._rtp_tasks.add(task)
            task.add_done_callback(self._rtp_tasks.discard)
        return await fut

    async def _rtp_flush(self) -> None:
        try:
            while self._rtp_waiting:
                batch = self._rtp_waiting[:self.cfg.rtp_batch]
                del self._rtp_waiting[:self.cfg.rtp_batch]
                try:
                    if len(batch) == 1:
                        outcomes: list[str | ApiError] = [await self._rtp_one(batch[0][0])]
                    else:
                        outcomes = await self._rtp_many([item for item, _ in batch])
                except ApiError as exc:
                    outcomes = [exc] * len(batch)
                except Exception as exc:  # never leave a create waiting
                    log.exception("request to pay failed")
                    outcomes = [ApiError(502, "switch request failed", type(exc).__name__)] * len(batch)
                for (_, fut), outcome in zip(batch, outcomes, strict=True):
                    if fut.done():  # its create was cancelled
                        continue
                    if isinstance(outcome, ApiError):
                        fut.set_exception(outcome)
                    else:
                        fut.set_result(outcome)
        finally:
            self._rtp_flights -= 1

    async def _rtp_post(self, doc: dict[str, Any]) -> httpx.Response:
        body = orjson.dumps(doc)
        headers = {"content-type": "application/json",
                   signing.HEADER: signing.sign(self.cfg.key, "POST", "/v1/rtp", body, self.now().timestamp())}
        try:
            return await self.cfg.switch.post("/v1/rtp", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(503, "switch unavailable", f"{type(exc).__name__}: retry with the same Idempotency-Key") \
                from None

    async def _rtp_one(self, item: dict[str, Any]) -> str:
        resp = await self._rtp_post(item)
        if resp.status_code not in (200, 202):
            raise ApiError(502, "switch refused the request to pay", f"HTTP {resp.status_code}: {resp.text[:300]}")
        return str(resp.json()["switch_ref"])

    async def _rtp_many(self, items: list[dict[str, Any]]) -> list[str | ApiError]:
        if time.monotonic() < self._rtp_single_until:
            return await self._rtp_each(items)
        resp = await self._rtp_post({"requests": items})
        if 400 <= resp.status_code < 500 and resp.status_code not in (401, 403, 409):
            # a switch that does not take the batch form (a switch of its own, an older simulator mid-upgrade): the
            # envelope was refused as a whole, nothing recorded - each in the single form, and so for a while
            log.warning("the switch refused the batch form of requests to pay (HTTP %s); single form for %.0f s",
                        resp.status_code, SINGLE_FORM_S)
            self._rtp_single_until = time.monotonic() + SINGLE_FORM_S
            return await self._rtp_each(items)
        if resp.status_code != 200:
            raise ApiError(502, "switch refused the request to pay", f"HTTP {resp.status_code}: {resp.text[:300]}")
        results = resp.json().get("results")
        if not isinstance(results, list) or len(results) != len(items):
            raise ApiError(502, "switch refused the request to pay", "batch answer without a result per request")
        return [str(r["switch_ref"]) if r.get("code") in (200, 202) else
                ApiError(502, "switch refused the request to pay", f"HTTP {r.get('code')}: {str(r)[:300]}")
                for r in results]

    async def _rtp_each(self, items: list[dict[str, Any]]) -> list[str | ApiError]:
        async def one(item: dict[str, Any]) -> str | ApiError:
            try:
                return await self._rtp_one(item)
            except ApiError as exc:
                return exc
        return list(await asyncio.gather(*(one(item) for item in items)))

    async def order(self, order_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
            row = await cur.fetchone()
        if not row:
            raise ApiError(404, "unknown order", order_id)
        return _order_doc(row)

    async def receipt(self, order_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT payload, signature, algorithm, chain FROM receipts WHERE order_id = %s",
                              (order_id,))
            row = await cur.fetchone()
        if not row:
            await self.order(order_id)  # 404 for unknown orders
            raise ApiError(404, "no receipt", "the order is not paid")
        return dict(row)

    async def _close(self, conn: psycopg.AsyncConnection[Any], row: dict[str, Any], status: str, reason: str | None,
                     now: datetime, late: str | None = None) -> None:
        await ledger.abort(conn, row["id"], row["amount"], now)
        await conn.execute("UPDATE orders SET status = %s, reason = %s, late_status = %s, closed_at = %s WHERE id = %s",
                           (status, reason, late, now, row["id"]))
        await notify.enqueue(conn, self.cfg.notify, row, status, now)
        ORDERS.labels(status).inc()

    async def cancel(self, order_id: str) -> dict[str, Any]:
        now = self.now()
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM orders WHERE id = %s FOR UPDATE", (order_id,))
            row = await cur.fetchone()
            if not row:
                raise ApiError(404, "unknown order", order_id)
            if row["status"] == "pending":
                await self._close(conn, row, "cancelled", "cancelled by the payer", now)
            elif row["status"] != "cancelled":
                raise ApiError(409, f"order is {row['status']}", "only a pending order can be cancelled")
        return await self.order(order_id)

    async def expire_due(self, limit: int = 500) -> int:
        now = self.now()
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM orders WHERE status = 'pending' AND expires_at <= %s ORDER BY expires_at"
                              " LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit))
            rows = await cur.fetchall()
            for row in rows:
                await self._close(conn, row, "expired", "not paid in time", now)
        return len(rows)

    # -- the switch's callbacks -------------------------------------------------------------------------------------

    async def callback(self, signature: str | None, raw: bytes) -> dict[str, Any]:
        """A signed decision callback (PROTOCOL.md §2): one event, or ``{"events": [...]}`` - a batch, answered with
        a result per event (``status`` 200, or the 4xx that event alone would have got: nothing written for it)."""
        now = self.now()
        reason = signing.verify(self.cfg.key, signature, "POST", CALLBACK_PATH, raw, now.timestamp())
        if reason:
            raise ApiError(401, "bad callback signature", reason)
        if raw[:1] == b"{" and b'"events"' in raw:
            try:
                doc = orjson.loads(raw)
            except ValueError as exc:
                raise ApiError(422, "invalid callback", f"malformed JSON: {exc}") from None
            if isinstance(doc, dict) and "events" in doc:
                return await self.callback_batch(doc, now)
        try:
            cb = Callback.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiError(422, "invalid callback", json.dumps(exc.errors(include_url=False), default=str)) from None
        payload = json.loads(raw)
        if cb.status == "approved":
            paid = await self._fast_paid([(cb, payload)], now)
            if cb.event_id in paid:
                return paid[cb.event_id]
        return await self._decision(cb, payload, now)

    async def callback_batch(self, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Apply a batch of decisions: the usual approvals in one statement (FAST_PAID), every other event by the
        general path, each exactly once per ``event_id`` as if it had come alone."""
        events = doc["events"]
        if set(doc) != {"events"} or not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
            raise ApiError(422, "invalid callback", f'a batch is {{"events": [1..{MAX_BATCH} decisions]}}')
        results: list[dict[str, Any] | None] = [None] * len(events)
        first: dict[str, int] = {}   # event_id -> its first index; later copies answer as that one did
        fast: list[tuple[Callback, dict[str, Any]]] = []
        rest: list[tuple[int, Callback, dict[str, Any]]] = []
        orders: set[str] = set()
        for i, item in enumerate(events):
            try:
                cb = Callback.model_validate(item)
            except ValidationError as exc:
                results[i] = {"event_id": item.get("event_id") if isinstance(item, dict) else None, "status": 422,
                              "title": "invalid callback",
                              "detail": json.dumps(exc.errors(include_url=False), default=str)}
                continue
            if cb.event_id in first:
                continue
            first[cb.event_id] = i
            if cb.status == "approved" and cb.rtp_id not in orders:
                fast.append((cb, item))
            else:
                rest.append((i, cb, item))
            orders.add(cb.rtp_id)
        paid = await self._fast_paid(fast, now) if fast else {}
        late = [(cb, item) for cb, item in fast if cb.event_id not in paid]
        if late:  # most often orders whose create has not committed yet: wait for it, then once more in one statement
            await self._wait_for_creates([cb.rtp_id for cb, _ in late])
            paid |= await self._fast_paid(late, now)
        for cb, item in fast:
            if cb.event_id in paid:
                results[first[cb.event_id]] = {"event_id": cb.event_id, "status": 200, **paid[cb.event_id]}
            else:
                rest.append((first[cb.event_id], cb, item))
        rest.sort(key=lambda r: r[0])  # in the batch's order: two decisions on one order apply as sent
        for i, cb, item in rest:
            try:
                results[i] = {"event_id": cb.event_id, "status": 200, **await self._decision(cb, item, now)}
            except ApiError as exc:
                results[i] = {"event_id": cb.event_id, "status": exc.status, "title": exc.title,
                              "detail": exc.detail}
            except Exception:  # this event only: the switch retries it, the batch's others stand
                log.exception("callback event %s failed", cb.event_id)
                results[i] = {"event_id": cb.event_id, "status": 500, "title": "internal error",
                              "detail": "retry this event"}
        for i, item in enumerate(events):
            if results[i] is None:  # a later copy of an event in this batch
                j = first[item["event_id"]]
                done = results[j] or {}
                results[i] = {**done, "result": "duplicate"} if done.get("status") == 200 else done
        return {"results": results}

    async def _wait_for_creates(self, order_ids: list[str]) -> None:
        """Wait until no create of these orders is in flight: their advisory locks, taken in id order (as a group of
        creates takes them) and released at once."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(id, 42)) FROM unnest(%s::text[]) AS t(id)"
                               " ORDER BY id", (sorted(set(order_ids)),), prepare=True)

    async def _fast_paid(self, items: list[tuple[Callback, dict[str, Any]]],
                         now: datetime) -> dict[str, dict[str, Any]]:
        """The approvals of pending fee orders (at most one event per order) in one statement (``FAST_PAID``): the
        results of the events applied, by event id; the others are for the general path. Each receipt is signed
        before, from the order's immutable fields (kept from its create here)."""
        if not self.fast_paid or not items:
            return {}
        async with self.pool.connection() as conn:
            await conn.set_autocommit(True)  # one statement, its own transaction: no BEGIN/COMMIT round trips
            try:
                found = {cb.rtp_id: self.recent.get(cb.rtp_id) for cb, _ in items}
                missing = [k for k, v in found.items() if v is None]
                if missing:  # created by another worker, or before a restart: their immutable fields, one read
                    cur = conn.cursor(row_factory=dict_row)
                    await cur.execute("SELECT id, kind, service_id, bill_reference, payee, amount, currency, channel,"
                                      " payer_account, switch_ref, body FROM orders WHERE id = ANY(%s)"
                                      " AND status = 'pending'", (missing,), prepare=True)
                    found |= {r["id"]: r for r in await cur.fetchall()}
                rows: list[dict[str, Any]] = []
                chain = algorithm = None
                for cb, payload in items:
                    order = found.get(cb.rtp_id)
                    if order is None or order["kind"] != "fee" or order["switch_ref"] != cb.switch_ref \
                            or order["amount"] != cb.amount:
                        continue
                    fields = receipt_fields(order, now)
                    rec = make_receipt(self.cfg.signer, fields)
                    chain, algorithm = rec["chain"], rec["algorithm"]
                    legs, opened = ledger.commit_legs(order["id"], order["payee"], order["amount"])
                    notes = notify.fee_rows(self.cfg.notify, order, "paid", now, receipt_id=fields["receipt_id"])
                    rows.append({
                        "id": order["id"], "ref": cb.switch_ref, "amount": cb.amount,
                        "decided": cb.decided_at.isoformat(), "event": cb.event_id, "payload": payload,
                        "r_payload": rec["payload"], "r_signature": rec["signature"],
                        "legs": [{"account": a, "amount": m} for a, m in legs],
                        "opened": [{"id": i, "normal": n, "no_overdraft": o, "tracked": t} for i, n, o, t in opened],
                        "notes": [{"target": t, "url": u, "event": e, "payload": p} for t, u, e, p in notes]})
                if not rows:
                    return {}
                try:
                    done = await (await conn.execute(FAST_PAID, {
                        "now": now, "rows": Jsonb(rows, dumps=_dumps), "r_algorithm": algorithm, "r_chain": chain},
                        prepare=True)).fetchall()
                except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected) as exc:
                    if isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name != "callbacks_pkey":
                        raise
                    return {}  # a copy applied concurrently (or two batches crossing): the general path decides
            finally:
                await conn.set_autocommit(False)
        out: dict[str, dict[str, Any]] = {}
        by_order = {cb.rtp_id: cb for cb, _ in items}
        for oid, created in done:
            self.recent.pop(oid, None)
            ORDERS.labels("paid").inc()
            PAY_LATENCY.observe(max((now - created).total_seconds(), 0.0))
            out[by_order[oid].event_id] = {"result": "paid", "order": oid}
        if self.notifier and any(r["notes"] for r in rows):
            self.notifier.wake.set()
        return out

    async def _decision(self, cb: Callback, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Apply one switch decision (a callback, or a status query's answer) exactly once per event: one database
        transaction in two round trips (pipeline mode): BEGIN + the order's lock + the order; then the postings,
        the order's new state, receipt, notification, the event's record + COMMIT."""
        try:
            async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                await conn.execute(ORDER_LOCK, (cb.rtp_id,))  # an order being created is committed before we look
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute("SELECT o.*, EXISTS (SELECT 1 FROM callbacks WHERE event_id = %s) AS seen"
                                  " FROM orders o WHERE o.id = %s FOR UPDATE", (cb.event_id, cb.rtp_id))
                row = await cur.fetchone()
                if not row:  # unknown here (e.g. its create failed after the switch accepted): the switch retries
                    raise ApiError(404, "unknown order", cb.rtp_id)
                if row["seen"]:
                    return {"result": "duplicate", "order": cb.rtp_id}
                result = await self._apply(conn, row, cb, now)
                # a copy of this event applied concurrently makes this insert fail: ours is then undone entirely
                await conn.execute("INSERT INTO callbacks (event_id, rtp_id, payload, result, received_at)"
                                   " VALUES (%s, %s, %s, %s, %s)", (cb.event_id, cb.rtp_id, Jsonb(payload), result, now))
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "callbacks_pkey":
                raise
            return {"result": "duplicate", "order": cb.rtp_id}
        if self.notifier and result != "ignored":
            self.notifier.wake.set()  # deliver the outcome's notification now rather than at the next interval
        self.recent.pop(cb.rtp_id, None)
        return {"result": result, "order": cb.rtp_id}

    async def _apply(self, conn: psycopg.AsyncConnection[Any], row: dict[str, Any], cb: Callback, now: datetime) -> str:
        if row["status"] != "pending":
            if row["status"] != ("paid" if cb.status == "approved" else "declined"):
                await conn.execute("UPDATE orders SET late_status = %s WHERE id = %s", (cb.status, row["id"]))
            return "ignored"
        if cb.switch_ref != row["switch_ref"] or cb.amount != row["amount"]:
            await self._close(conn, row, "failed", f"switch reported {cb.amount} under {cb.switch_ref}", now,
                              late=cb.status)
            return "mismatch"
        if cb.decided_at > row["expires_at"]:  # decided in time but delivered late still counts as in time
            await self._close(conn, row, "expired", "not paid in time", now, late=cb.status)
            return "expired"
        if cb.status == "declined":
            await self._close(conn, row, "declined", cb.reason or "declined", now)
            return "declined"
        await ledger.commit(conn, row["id"], row["payee"], row["amount"], now)
        await conn.execute("UPDATE orders SET status = 'paid', closed_at = %s WHERE id = %s", (now, row["id"]))
        if row["bill_reference"]:
            await conn.execute("UPDATE bills SET paid_order = %s WHERE reference = %s", (row["id"],
                                                                                         row["bill_reference"]))
        fields = receipt_fields(row, now)
        rec = make_receipt(self.cfg.signer, fields)
        await conn.execute("INSERT INTO receipts (order_id, payload, signature, algorithm, chain) VALUES"
                           " (%s, %s, %s, %s, %s)", (row["id"], rec["payload"], rec["signature"], rec["algorithm"],
                                                     rec["chain"]))
        await notify.enqueue(conn, self.cfg.notify, row, "paid", now, receipt_id=fields["receipt_id"])
        ORDERS.labels("paid").inc()
        PAY_LATENCY.observe(max((now - row["created_at"]).total_seconds(), 0.0))
        return "paid"

    async def query_switch(self, order_id: str) -> dict[str, Any]:
        path = f"/v1/rtp/{order_id}"
        headers = {signing.HEADER: signing.sign(self.cfg.key, "GET", path, b"", self.now().timestamp())}
        resp = await self.cfg.switch.get(path, headers=headers)
        if resp.status_code != 200:
            raise ApiError(502, "switch status query failed", f"HTTP {resp.status_code}")
        doc: dict[str, Any] = resp.json()
        return doc

    async def sync_overdue(self, after: timedelta = timedelta(minutes=2), limit: int = 50) -> dict[str, int]:
        """Ask the switch about pending orders whose callback is overdue (no news ``after`` creation, asked at most
        once per ``after``) and apply any decision found - a lost callback cannot leave an order hanging."""
        now = self.now()
        async with self.pool.connection() as conn:
            ids = [r[0] for r in await (await conn.execute(
                "UPDATE orders SET checked_at = %s WHERE id IN (SELECT id FROM orders WHERE status = 'pending'"
                " AND created_at <= %s AND (checked_at IS NULL OR checked_at <= %s) ORDER BY created_at LIMIT %s"
                " FOR UPDATE SKIP LOCKED) RETURNING id", (now, now - after, now - after, limit))).fetchall()]
        counts = {"asked": len(ids), "applied": 0}
        for oid in ids:
            try:
                doc = await self.query_switch(oid)
            except (ApiError, httpx.HTTPError) as exc:
                log.warning("status query failed", extra={"fields": {"order": oid, "error": str(exc)}})
                continue
            if doc.get("status") not in ("approved", "declined"):
                continue
            cb = Callback(event_id=f"Q-{doc['switch_ref']}"[:64], rtp_id=oid, switch_ref=doc["switch_ref"],
                          status=doc["status"], amount=doc["amount"], currency=doc["currency"],
                          reason=doc.get("reason"), decided_at=doc["decided_at"])
            out = await self._decision(cb, {"source": "status-query", **doc}, now)
            counts["applied"] += out["result"] not in ("duplicate", "ignored")
        return counts

    # -- reconciliation ---------------------------------------------------------------------------------------------

    async def settlement(self, day: date) -> str:
        """The switch's signed settlement file for ``day`` (CSV text)."""
        path = f"/v1/settlements/{day.isoformat()}"
        headers = {signing.HEADER: signing.sign(self.cfg.key, "GET", path, b"", self.now().timestamp())}
        try:
            resp = await self.cfg.switch.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(503, "switch unavailable", type(exc).__name__) from None
        if resp.status_code != 200:
            raise ApiError(502, "settlement file unavailable", f"HTTP {resp.status_code}")
        reason = signing.verify(self.cfg.key, resp.headers.get(signing.HEADER), "GET", path, resp.content,
                                self.now().timestamp())
        if reason:
            raise ApiError(502, "settlement file signature invalid", reason)
        return resp.text

    async def reconcile(self, day: date, uploaded: str | None = None) -> dict[str, Any]:
        """Match the ledger's commits of ``day`` against the settlement file: the switch's (fetched and its
        signature checked) or, with ``uploaded``, the CSV text an operator supplies (the file the switch delivered
        out of band). Every line of the file is matched or listed as a mismatch; the run is recorded."""
        if uploaded is None:
            text, source = await self.settlement(day), "switch"
            try:
                rows = parse_settlement(text)
            except SettlementError as exc:
                raise ApiError(502, "the switch's settlement file is malformed", str(exc)) from None
        else:
            text, source = uploaded, "uploaded"
            try:
                rows = parse_settlement(text)
            except SettlementError as exc:
                raise ApiError(422, "invalid settlement file", str(exc)) from None
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # the ledger's view: per order committed that day, the amount moved to switch:receivable
            await cur.execute(
                "SELECT t.order_id, o.switch_ref, e.amount FROM ledger_tx t JOIN entries e ON e.tx_id = t.id"
                " JOIN orders o ON o.id = t.order_id WHERE t.kind = 'commit' AND e.account = %s"
                " AND t.created_at >= %s AND t.created_at < %s", (ledger.RECEIVABLE, start, start + timedelta(days=1)))
            books = {r["order_id"]: r for r in await cur.fetchall()}
            mismatches: list[dict[str, Any]] = []
            matched: list[dict[str, Any]] = []
            seen: set[str] = set()
            for s in rows:
                rtp_id, amount = s["rtp_id"], s["amount"]
                if rtp_id in seen:
                    mismatches.append({"kind": "duplicate_in_settlement", "order_id": rtp_id,
                                       "switch_ref": s["switch_ref"], "switch_amount": amount, "ledger_amount": None,
                                       "line": s["line"]})
                    continue
                seen.add(rtp_id)
                mine = books.pop(rtp_id, None)
                if mine is None:  # perhaps committed on another day
                    await cur.execute(
                        "SELECT t.order_id, o.switch_ref, e.amount FROM ledger_tx t JOIN entries e ON e.tx_id = t.id"
                        " JOIN orders o ON o.id = t.order_id WHERE t.kind = 'commit' AND e.account = %s"
                        " AND t.order_id = %s", (ledger.RECEIVABLE, rtp_id))
                    mine = await cur.fetchone()
                if mine is None:
                    await cur.execute("SELECT status FROM orders WHERE id = %s", (rtp_id,))
                    o = await cur.fetchone()
                    mismatches.append({"kind": "missing_in_ledger", "order_id": rtp_id, "switch_ref": s["switch_ref"],
                                       "switch_amount": amount, "ledger_amount": None,
                                       "order_status": o["status"] if o else None, "line": s["line"]})
                elif amount != mine["amount"] or s["switch_ref"] != mine["switch_ref"]:
                    mismatches.append({"kind": "amount_mismatch" if amount != mine["amount"]
                                       else "reference_mismatch", "order_id": rtp_id, "switch_ref": s["switch_ref"],
                                       "switch_amount": amount, "ledger_amount": mine["amount"], "line": s["line"]})
                else:
                    matched.append({"order_id": rtp_id, "switch_ref": s["switch_ref"], "amount": amount,
                                    "line": s["line"]})
            for oid, mine in sorted(books.items()):
                mismatches.append({"kind": "missing_in_settlement", "order_id": oid, "switch_ref": mine["switch_ref"],
                                   "switch_amount": None, "ledger_amount": mine["amount"], "line": None})
            digest = hashlib.sha256(text.encode()).hexdigest()
            await cur.execute("INSERT INTO reconciliations (day, created_at, matched, mismatches, source,"
                              " settlement_sha256) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                              (day, self.now(), len(matched), Jsonb(mismatches), source, digest))
            rid = (await cur.fetchone() or {}).get("id")
        return {"id": rid, "date": day.isoformat(), "source": source, "settlement_sha256": digest,
                "settlement_rows": len(rows), "matched": len(matched), "mismatches": mismatches,
                "matched_lines": matched}

    async def reconciliation(self, rid: int) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM reconciliations WHERE id = %s", (rid,))
            r = await cur.fetchone()
        if not r:
            raise ApiError(404, "unknown reconciliation", str(rid))
        return {"id": r["id"], "date": r["day"].isoformat(), "source": r["source"],
                "settlement_sha256": r["settlement_sha256"], "matched": r["matched"], "mismatches": r["mismatches"],
                "created_at": _iso(r["created_at"])}

    async def ledger_check(self) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            return await ledger.check(conn)
