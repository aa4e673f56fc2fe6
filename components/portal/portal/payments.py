"""The payment gateway's notifications of fee order outcomes, and what the portal answers about them.

``POST /api/payments/notifications`` (``payment.notify``): JSON ``{"event", "order_id", "status", "amount",
"currency", "service_id", "switch_ref", "receipt_id", "at"}`` with ``X-Payment-Signature: t=<unix>,v1=<hex
HMAC-SHA256(notify-key, "<t>.POST.<path>." + body)>``; the key is the gateway's ``notify-key`` secret, shared with
the portal as ``payment/notify-key`` (one value in the stack's state). The signature is checked over the raw body
before anything is parsed; a missing, malformed, wrong or stale (more than 5 minutes off) one is 401
``application/problem+json`` and nothing is written. The gateway retries anything but a 2xx, so a valid
notification is acknowledged (200) once it is stored, a re-delivery of the same order and event included
(``duplicate: true``, nothing changed), and one naming a service the catalog does not have is stored too: the
money has moved, refusing would only turn it into a dead letter.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from govcloud_common import signing
from govcloud_common.settings import Settings
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from portal import models

log = logging.getLogger("portal.payments")

PATH = "/api/payments/notifications"  # what the gateway signs (payment.notify.PORTAL_PATH)
HEADER = "X-Payment-Signature"
MAX_BODY = 16 * 1024
SIGNATURE_REALM = 'Signature realm="govcloud portal payment notifications", header="X-Payment-Signature"'
PROBLEM = {"description": "problem details (RFC 9457)",
           "content": {"application/problem+json": {"schema": {"type": "object"}}}}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json", headers=headers)


# -- storage ------------------------------------------------------------------------------------------------------------

ORDER_COLUMNS = "order_id, service_id, service_known, status, amount, currency, receipt_id, at, updated_at"


async def record(pool: AsyncConnectionPool, n: models.PaymentNotification, payload: dict[str, Any]) -> dict[str, Any]:
    """Store one notification: the event once per (order, event); the order's state when it is the latest."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("INSERT INTO payment_events (order_id, event, payload) VALUES (%s, %s, %s) "
                                 "ON CONFLICT DO NOTHING", (n.order_id, n.event, Jsonb(payload)))
        duplicate = cur.rowcount == 0
        if not duplicate:
            # out of order deliveries: an older state never overwrites a newer one
            await conn.execute(
                "INSERT INTO payment_orders (order_id, service_id, service_known, status, amount, currency, "
                "switch_ref, receipt_id, at) SELECT %(order)s, %(service)s, EXISTS (SELECT 1 FROM services "
                "WHERE id = %(service)s), %(status)s, %(amount)s, %(currency)s, %(ref)s, %(receipt)s, %(at)s "
                "ON CONFLICT (order_id) DO UPDATE SET service_id = excluded.service_id, "
                "service_known = excluded.service_known, status = excluded.status, amount = excluded.amount, "
                "currency = excluded.currency, switch_ref = excluded.switch_ref, "
                "receipt_id = coalesce(excluded.receipt_id, payment_orders.receipt_id), at = excluded.at, "
                "updated_at = now() WHERE payment_orders.at <= excluded.at",
                {"order": n.order_id, "service": n.service_id, "status": n.status, "amount": n.amount,
                 "currency": n.currency, "ref": n.switch_ref, "receipt": n.receipt_id, "at": n.at})
        row = await (await conn.execute("SELECT status, service_known FROM payment_orders WHERE order_id = %s",
                                        (n.order_id,))).fetchone()
    assert row is not None  # the event's insert above or an earlier one created it, in the same transaction
    return {"order_id": n.order_id, "event": n.event, "status": row[0], "duplicate": duplicate,
            "service_known": row[1]}


async def order(pool: AsyncConnectionPool, order_id: str) -> dict[str, Any] | None:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {ORDER_COLUMNS} FROM payment_orders WHERE order_id = %s", (order_id,))
        return await cur.fetchone()


async def paid_by_service(pool: AsyncConnectionPool, body_id: str | None = None) -> list[dict[str, Any]]:
    """Paid fee orders per service (most paid first); ``body_id`` limits them to the body's services."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT p.service_id, s.body_id, count(*) AS paid_orders, sum(p.amount)::bigint AS paid_amount_syp, "
            "max(p.at) AS last_paid_at FROM payment_orders p LEFT JOIN services s ON s.id = p.service_id "
            "WHERE p.status = 'paid' AND (%(body)s::text IS NULL OR s.body_id = %(body)s) "
            "GROUP BY p.service_id, s.body_id ORDER BY count(*) DESC, p.service_id", {"body": body_id})
        return await cur.fetchall()


# -- HTTP ---------------------------------------------------------------------------------------------------------------

def _notify_key(request: Request) -> str | None:
    key: str | None = request.app.state.notify_key
    if key is None:
        try:
            key = Settings.secret("notify-key")
        except RuntimeError:
            return None
    return key


def mount(app: FastAPI) -> None:
    from portal.app import pool_of, require_admin

    app.state.notify_key = getattr(app.state, "notify_key", None)
    app.state.clock = getattr(app.state, "clock", time.time)

    @app.post(PATH, response_model=models.PaymentAck, tags=["payments"],
              responses={401: PROBLEM, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM, 503: PROBLEM},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": models.PaymentNotification.model_json_schema()}}},
                  "parameters": [{"name": HEADER, "in": "header", "required": True, "schema": {"type": "string"},
                                  "description": 't=<unix>,v1=<hex HMAC-SHA256(notify-key, "<t>.POST.<path>." '
                                                 '+ body)>'}]})
    async def payment_notification(request: Request) -> Response:
        """A fee order's outcome from the payment gateway: verified, stored once, acknowledged (see README)."""
        key = _notify_key(request)
        if not key:
            return problem(503, "notifications not configured",
                           "GOVCLOUD_SECRET_NOTIFY_KEY is not set: the portal needs secret payment/notify-key")
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return problem(413, "too large", f"a notification is at most {MAX_BODY} bytes")
        body = await request.body()
        if len(body) > MAX_BODY:
            return problem(413, "too large", f"a notification is at most {MAX_BODY} bytes")
        why = signing.verify(key, request.headers.get(HEADER), "POST", PATH, body, request.app.state.clock())
        if why is not None:
            log.warning("payment notification rejected", extra={"fields": {"reason": why}})
            return problem(401, "invalid signature", f"{HEADER}: {why}", headers={"WWW-Authenticate": SIGNATURE_REALM})
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return problem(415, "unsupported media type", "send application/json")
        try:
            payload = json.loads(body)
            n = models.PaymentNotification.model_validate(payload)
        except (ValueError, ValidationError) as exc:
            return problem(422, "invalid notification", " ".join(str(exc).split())[:500])
        ack = await record(pool_of(request), n, payload)
        if not ack["service_known"] and not ack["duplicate"]:
            log.warning("payment for a service not in the catalog",
                        extra={"fields": {"order_id": n.order_id, "service_id": n.service_id}})
        return JSONResponse(ack)

    @app.get("/api/payments/{order_id}", response_model=models.PaymentStatus, tags=["payments"],
             responses={404: PROBLEM})
    async def payment_status(request: Request, order_id: str) -> Any:
        """The order's payment status as the gateway last notified it."""
        row = await order(pool_of(request), order_id)
        if row is None:
            return problem(404, "unknown order", f"no notification about order {order_id!r} has arrived")
        return row

    @app.get("/api/admin/payments/services", response_model=list[models.ServicePayments], tags=["admin"],
             dependencies=[Depends(require_admin)])
    async def payments_by_service(request: Request, body: str | None = None) -> Any:
        """Paid fee orders per service, from the gateway's notifications (``body``: that body's services)."""
        return await paid_by_service(pool_of(request), body)
