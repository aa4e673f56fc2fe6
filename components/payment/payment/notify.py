"""Notifications of order outcomes to the portal (fee orders) and billers (bill orders).

Written in the same database transaction as the order's state change (a transactional outbox), delivered as
``POST <url>`` with JSON ``{"event", "order_id", "status", "amount", "currency", "service_id" | "bill_reference",
"switch_ref", "receipt_id", "at"}`` and ``X-Payment-Signature: t=<unix>,v1=<hex HMAC-SHA256(key,
"<t>.POST.<path>." + body)>`` (the switch protocol's scheme; key = the portal's ``notify-key`` or the biller's secret).
A 2xx acknowledges; anything else is retried with exponential backoff (2 s … 10 min); after ``max_attempts`` the
notification becomes a dead letter, listed by the admin API and re-deliverable.

Fee orders are also told to the competent body's system through the government service bus (target ``bus``):
``POST <bus>/r1/<body>/inbox/notices/payment-notices`` over mutual TLS with the gateway's bus-client certificate,
``Prefer: respond-async`` (the bus acknowledges with 202 once queued and delivers itself, with retries) and a stable
``X-Bus-Message-Id`` (``payment-<order>-<event>``), so a notification re-sent after a lost answer is one message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg
from govcloud_common import signing
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

HEADER = "X-Payment-Signature"
PORTAL_PATH = "/api/payments/notifications"
MAX_BACKOFF_S = 600


BUS_SERVICE = "inbox/notices/payment-notices"  # every body's inbox system, service notices (bus registry)


@dataclass
class BusNotify:
    client: httpx.AsyncClient       # mutual TLS with the gateway's bus-client certificate, trusting the platform CA
    url: str                        # the bus's member endpoint (GOVCLOUD_URL_BUS_MTLS)
    server_name: str | None = None  # the name in the bus's certificate when the URL's host is another


@dataclass
class NotifyConfig:
    client: httpx.AsyncClient
    portal_url: str | None          # GOVCLOUD_URL_PORTAL; None = no portal notifications
    portal_key: str | None          # shared with the portal ("notify-key")
    max_attempts: int = 12
    bus: BusNotify | None = None    # None = the bodies are not told


def payload_of(order: dict[str, Any], status: str, now: datetime, receipt_id: str | None = None) -> dict[str, Any]:
    return {"event": f"order.{status}", "order_id": order["id"], "status": status, "amount": order["amount"],
            "currency": order["currency"], "service_id": order["service_id"],
            "bill_reference": order["bill_reference"], "switch_ref": order["switch_ref"],
            "receipt_id": receipt_id, "at": now.isoformat()}


def fee_rows(cfg: NotifyConfig | None, order: dict[str, Any], status: str, now: datetime,
             receipt_id: str | None = None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The notifications (target, url, event, payload) of a fee order reaching ``status``."""
    if cfg is None or order["kind"] != "fee":
        return []
    payload = payload_of(order, status, now, receipt_id)
    rows = []
    if cfg.bus and order.get("body"):
        rows.append(("bus", f"{cfg.bus.url.rstrip('/')}/r1/{order['body']}/{BUS_SERVICE}", payload["event"],
                     {**payload, "body": order["body"]}))
    if cfg.portal_url:
        rows.append(("portal", cfg.portal_url.rstrip("/") + PORTAL_PATH, payload["event"], payload))
    return rows


async def enqueue(conn: psycopg.AsyncConnection[Any], cfg: NotifyConfig | None, order: dict[str, Any], status: str,
                  now: datetime, receipt_id: str | None = None) -> None:
    """Queue the notification of ``order`` reaching ``status`` inside the caller's transaction."""
    if cfg is None:
        return
    for target, url, event, payload in fee_rows(cfg, order, status, now, receipt_id):
        await conn.execute("INSERT INTO notifications (target, url, event, order_id, payload, next_at)"
                           " VALUES (%s, %s, %s, %s, %s, %s)", (target, url, event, order["id"], Jsonb(payload), now))
    if order["kind"] == "bill":
        payload = payload_of(order, status, now, receipt_id)
        await conn.execute(
            "INSERT INTO notifications (target, url, event, order_id, payload, next_at)"
            " SELECT 'biller:' || b.id, b.notify_url, %s, %s, %s, %s FROM bills x JOIN billers b ON b.id = x.biller_id"
            " WHERE x.reference = %s AND b.notify_url IS NOT NULL",
            (payload["event"], order["id"], Jsonb(payload), now, order["bill_reference"]))


class Notifier:
    def __init__(self, pool: AsyncConnectionPool, cfg: NotifyConfig) -> None:
        self.pool, self.cfg = pool, cfg
        self.wake = asyncio.Event()  # set when this process queued a notification: the delivery loop runs at once

    async def _key(self, conn: psycopg.AsyncConnection[Any], target: str) -> str | None:
        if target == "bus":
            return None  # mutual TLS identifies the gateway to the bus
        if target == "portal":
            return self.cfg.portal_key
        row = await (await conn.execute("SELECT notify_secret FROM billers WHERE id = %s",
                                        (target.removeprefix("biller:"),))).fetchone()
        return row[0] if row else None

    async def _send(self, target: str, url: str, key: str | None, payload: dict[str, Any],
                    now: datetime) -> str | None:
        body = orjson.dumps(payload)
        headers = {"content-type": "application/json"}
        client, extensions = self.cfg.client, {}
        if target == "bus":
            if self.cfg.bus is None:
                return "the bus is not configured"
            client = self.cfg.bus.client
            headers |= {"prefer": "respond-async", "x-bus-message-id": f"payment-{payload['order_id']}-"
                                                                        f"{payload['event']}"}
            if self.cfg.bus.server_name:
                extensions["sni_hostname"] = self.cfg.bus.server_name
        elif not key:
            return "no signing key configured for this target"
        else:
            headers[HEADER] = signing.sign(key, "POST", urlsplit(url).path, body, now.timestamp())
        try:
            resp = await client.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if resp.status_code < 300 else f"HTTP {resp.status_code}"

    async def deliver_due(self, now: datetime, limit: int = 128, parallel: int = 32) -> dict[str, int]:
        sem = asyncio.Semaphore(parallel)
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM notifications WHERE delivered_at IS NULL AND dead_at IS NULL"
                              " AND next_at <= %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit))
            rows = await cur.fetchall()
            keys = {t: await self._key(conn, t) for t in {r["target"] for r in rows}}

            async def one(r: dict[str, Any]) -> str | None:
                async with sem:
                    return await self._send(r["target"], r["url"], keys[r["target"]], r["payload"], now)

            errors = await asyncio.gather(*(one(r) for r in rows))
            counts = {"delivered": 0, "retry": 0, "dead": 0}
            delivered: list[int] = []
            failed: list[tuple[datetime | None, datetime | None, str, int]] = []  # (dead_at, next_at, error, id)
            for r, err in zip(rows, errors, strict=True):
                if err is None:
                    counts["delivered"] += 1
                    delivered.append(r["id"])
                elif r["attempts"] + 1 >= self.cfg.max_attempts:
                    counts["dead"] += 1
                    failed.append((now, None, err, r["id"]))
                else:
                    counts["retry"] += 1
                    backoff = timedelta(seconds=min(2 ** (r["attempts"] + 1), MAX_BACKOFF_S))
                    failed.append((None, now + backoff, err, r["id"]))
            if delivered:  # one statement for the batch
                await conn.execute("UPDATE notifications SET delivered_at = %s, attempts = attempts + 1,"
                                   " last_error = NULL WHERE id = ANY(%s)", (now, delivered))
            if failed:
                async with conn.cursor() as c:
                    await c.executemany("UPDATE notifications SET dead_at = %s, next_at = coalesce(%s, next_at),"
                                        " attempts = attempts + 1, last_error = %s WHERE id = %s", failed)
        return counts

    async def dead_letters(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT id, target, url, event, order_id, attempts, dead_at, last_error"
                              " FROM notifications WHERE dead_at IS NOT NULL ORDER BY id")
            rows = await cur.fetchall()
        return [{**r, "dead_at": r["dead_at"].isoformat()} for r in rows]

    async def redeliver(self, nid: int, now: datetime) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("UPDATE notifications SET dead_at = NULL, attempts = 0, next_at = %s"
                                     " WHERE id = %s AND dead_at IS NOT NULL", (now, nid))
            return cur.rowcount == 1
