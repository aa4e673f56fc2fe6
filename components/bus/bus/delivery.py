"""Reliable asynchronous delivery on NATS JetStream.

A client asks for it with ``Prefer: respond-async``: the bus checks identity and access right, persists the
request in the ``<P>BUS`` stream (``Nats-Msg-Id`` = the message id, so a re-sent request within the duplicate
window is stored once) and answers 202. A durable pull consumer delivers it to the provider through the same
exchange path as synchronous calls (conversion included), with ``X-Bus-Message-Id`` so the provider can
de-duplicate. Retryable failures (unreachable, timeout, 5xx, open circuit) are retried with backoff (``nak``
with a delay); after ``max_attempts`` — or at once for a 4xx refusal — the message goes to the ``<P>DLQ``
stream with its reason, from where it can be replayed. A message already delivered (its ack lost) is
acknowledged again without a second delivery.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from bus import metrics
from bus.identity import Refused
from bus.registry import Registry
from bus.router import Exchange, Router

log = logging.getLogger("bus.delivery")


class Delivery:
    def __init__(self, url: str, router: Router, registry: Registry, pool: AsyncConnectionPool, *,
                 prefix: str = "bus", max_attempts: int = 5, backoff: Sequence[float] = (1, 2, 5, 10, 30, 60),
                 ack_wait: float = 30.0, batch: int = 32, max_inflight: int = 256) -> None:
        self.url, self.router, self.registry, self.pool = url, router, registry, pool
        self.prefix, self.max_attempts, self.backoff, self.ack_wait, self.batch = (
            prefix, max_attempts, tuple(backoff), ack_wait, batch)
        self.stream, self.dlq = f"{prefix.upper()}BUS", f"{prefix.upper()}DLQ"
        self.nc: Any = None
        self.js: Any = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.max_inflight = max_inflight
        self._slots = asyncio.Semaphore(max_inflight)
        self._inflight: set[asyncio.Task[None]] = set()
        self.trace: deque[tuple[float, str]] = deque(maxlen=64)  # recent consumer events, for diagnosis
        self._t0 = time.monotonic()

    async def start(self) -> None:
        self.nc = await nats.connect(self.url, name="govcloud-bus", max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        for name, subject in ((self.stream, f"{self.prefix}.deliver.>"), (self.dlq, f"{self.prefix}.dead.>")):
            cfg = StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.LIMITS,
                               duplicate_window=120.0, max_age=14 * 86400.0)
            try:
                await self.js.add_stream(cfg)
            except Exception:
                await self.js.update_stream(cfg)
        self.sub = await self.js.pull_subscribe(
            f"{self.prefix}.deliver.>", durable=f"{self.prefix}-delivery", stream=self.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait, max_deliver=-1,
                                  max_ack_pending=1000))
        self.router.enqueue = self.enqueue
        self._task = asyncio.create_task(self._consume(), name="bus-delivery")

    def _note(self, event: str) -> None:
        self.trace.append((round(time.monotonic() - self._t0, 3), event))

    async def stop(self) -> None:
        for task in [self._task, *self._inflight]:
            if task:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._inflight] if t), return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)  # in-flight messages are redelivered after ack_wait

    async def ready(self) -> str | None:
        if self.nc is None or not self.nc.is_connected:
            return "not connected to NATS"
        await self.js.stream_info(self.stream)
        return None

    # ---- enqueue ------------------------------------------------------------------------------------------

    async def enqueue(self, ex: Exchange) -> dict[str, Any]:
        doc = {"messageId": ex.message_id, "service": ex.route.key, "client": ex.client_member,
               "method": ex.method, "path": ex.rest_path,
               "query": ex.query, "soap": ex.soap_client, "correlationId": ex.correlation_id,
               "headers": [[k.decode("latin1"), v.decode("latin1")] for k, v in ex.headers
                           if k in (b"content-type", b"soapaction", b"accept")],
               "body": base64.b64encode(ex.body).decode()}
        subject = f"{self.prefix}.deliver.{ex.route.body}.{ex.route.system}.{ex.route.service}"
        async with self.pool.connection() as conn:  # the row first: the consumer may take the message at once
            cur = await conn.execute("INSERT INTO async_messages (message_id, client, service, state) "
                                     "VALUES (%s, %s, %s, 'queued') ON CONFLICT DO NOTHING",
                                     (ex.message_id, ex.client_member, ex.route.key))
            new_row = cur.rowcount == 1
        try:
            ack = await self.js.publish(subject, json.dumps(doc).encode(), headers={"Nats-Msg-Id": ex.message_id})
        except Exception as exc:
            if new_row:
                async with self.pool.connection() as conn:
                    await conn.execute("DELETE FROM async_messages WHERE message_id = %s AND state = 'queued'",
                                       (ex.message_id,))
            raise Refused(503, "queue-unavailable", f"the message could not be queued: {exc}") from None
        self._note("published")
        metrics.QUEUE_DEPTH.labels(self.stream).inc(0 if ack.duplicate else 1)
        return {"messageId": ex.message_id, "status": "queued", "duplicate": bool(ack.duplicate),
                "streamSeq": ack.seq}

    # ---- consume ------------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Fetch and deliver concurrently (up to ``max_inflight``): a slow provider holds only its own messages."""
        while True:
            await self._slots.acquire()  # a free slot before asking for more
            self._slots.release()
            try:
                # one at a time: a lingering pull returns on the first message (nats-py's batch fetch waits for
                # the whole batch or the expiry), and delivery runs in tasks, so the loop is back at once
                self._note("fetch")
                msgs = await self.sub.fetch(1, timeout=5.0)
            except NatsTimeout:
                self._note("fetch-timeout")
                continue
            except Exception as exc:
                self._note(f"fetch-error {exc!r}")
                log.exception("fetch from JetStream failed")
                await asyncio.sleep(1.0)  # back off from a broken connection (not synchronisation)
                continue
            self._note(f"fetched {len(msgs)}")
            for m in msgs:
                await self._slots.acquire()
                task = asyncio.create_task(self._one(m))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _one(self, msg: Any) -> None:
        try:
            await self._handle(msg)
        finally:
            self._slots.release()

    async def _state(self, message_id: str) -> str | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT state FROM async_messages WHERE message_id = %s",
                                            (message_id,))).fetchone()
        return row[0] if row else None

    async def _set(self, message_id: str, state: str, attempts: int, error: str | None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE async_messages SET state = %s, attempts = %s, last_error = %s, "
                               "updated_at = now() WHERE message_id = %s", (state, attempts, error, message_id))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, message_id: str, states: set[str], timeout: float) -> str:
        """Wait (event-driven, bounded) until a message reaches one of ``states``; returns the state."""
        async def _wait() -> str:
            async with self._changed:
                while True:
                    state = await self._state(message_id)
                    if state in states:
                        return state
                    await self._changed.wait()
        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            async with self.pool.connection() as conn:
                row = await (await conn.execute("SELECT state, attempts, last_error FROM async_messages "
                                                "WHERE message_id = %s", (message_id,))).fetchone()
            raise TimeoutError(f"{message_id} not in {sorted(states)} after {timeout} s: {row}; "
                               f"recent events {list(self.trace)[-20:]}") from None

    async def _handle(self, msg: Any) -> None:
        self._note("handle")
        attempt = msg.metadata.num_delivered
        message_id = msg.headers.get("Nats-Msg-Id", "") if msg.headers else ""
        try:
            doc = json.loads(msg.data)
            message_id = doc.get("messageId", message_id)  # replays carry another Nats-Msg-Id
            state = await self._state(message_id)
            self._note(f"state {message_id} {state}")
            if state == "delivered":  # the ack was lost: never deliver twice
                await msg.ack()
                return
            body, system, service = doc["service"].split("/")
            route = self.registry.routes.get((body, system, service))
            if route is None:
                await self._dead(msg, doc, message_id, attempt, f"unknown-service: {doc['service']}")
                return
            cbody, csystem = doc["client"].split("/")
            if not self.registry.allowed(cbody, csystem, route):
                await self._dead(msg, doc, message_id, attempt, f"access-denied: {doc['client']} -> {route.key}")
                return
            ex = Exchange(route, doc["client"], doc["method"], doc["path"], doc["query"],
                          [(k.encode("latin1"), v.encode("latin1")) for k, v in doc["headers"]],
                          base64.b64decode(doc["body"]), doc["soap"], doc["correlationId"], message_id)
            self._note(f"exchange {message_id}")
            try:
                result = await self.router.exchange(ex)
                status, error = result.status, (None if result.status < 400 else result.body.decode()[:500])
            except Refused as r:
                status, error = r.status, f"{r.code}: {r.detail}"
            self.router.msglog.append({"mode": "async-deliver", "correlationId": doc["correlationId"],
                                       "messageId": message_id, "client": doc["client"], "service": route.key,
                                       "attempt": attempt, "status": status, "error": error})
            if status < 400:
                await self._set(message_id, "delivered", attempt, None)
                await msg.ack()
                metrics.DELIVERIES.labels("delivered").inc()
                metrics.QUEUE_DEPTH.labels(self.stream).dec()
            elif status in (408, 429) or status >= 500:
                if attempt >= self.max_attempts:
                    await self._dead(msg, doc, message_id, attempt, f"gave up after {attempt} attempts: {error}")
                else:
                    await self._set(message_id, "retrying", attempt, error)
                    await msg.nak(delay=self.backoff[min(attempt - 1, len(self.backoff) - 1)])
                    metrics.DELIVERIES.labels("retry").inc()
            else:
                await self._dead(msg, doc, message_id, attempt, f"provider refused (HTTP {status}): {error}")
        except Exception as exc:
            log.exception("delivery of %s failed", message_id)
            await msg.nak(delay=self.backoff[0])
            with contextlib.suppress(Exception):
                await self._set(message_id, "retrying", attempt, f"{type(exc).__name__}: {exc}")

    async def _dead(self, msg: Any, doc: dict[str, Any], message_id: str, attempt: int, reason: str) -> None:
        self._note(f"dead {message_id}")
        subject = msg.subject.replace(f"{self.prefix}.deliver.", f"{self.prefix}.dead.", 1)
        await self.js.publish(subject, msg.data, headers={
            "Nats-Msg-Id": f"{message_id}:dead:{msg.metadata.sequence.stream}", "Bus-Message-Id": message_id,
            "Bus-Reason": reason[:1000], "Bus-Attempts": str(attempt)})
        self._note(f"dlq published {message_id}")
        await msg.term()
        await self._set(message_id, "dead", attempt, reason)
        metrics.DELIVERIES.labels("dead").inc()
        metrics.QUEUE_DEPTH.labels(self.stream).dec()
        log.warning("message dead-lettered", extra={"fields": {"messageId": message_id, "reason": reason}})

    # ---- dead letters -------------------------------------------------------------------------------------

    async def dead_letters(self) -> list[dict[str, Any]]:
        info = await self.js.stream_info(self.dlq)
        out: list[dict[str, Any]] = []
        if info.state.messages == 0:
            return out
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                m = await self.js.get_msg(self.dlq, seq)
            except NotFoundError:
                continue
            doc = json.loads(m.data)
            headers = m.headers or {}
            out.append({"seq": seq, "messageId": headers.get("Bus-Message-Id"), "service": doc["service"],
                        "client": doc["client"], "reason": headers.get("Bus-Reason"),
                        "attempts": int(headers.get("Bus-Attempts", "0"))})
        return out

    async def replay(self, seq: int) -> dict[str, Any]:
        m = await self.js.get_msg(self.dlq, seq)
        headers = m.headers or {}
        message_id = headers["Bus-Message-Id"]
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE async_messages SET state = 'queued', attempts = 0, last_error = NULL, "
                               "updated_at = now() WHERE message_id = %s", (message_id,))
        subject = m.subject.replace(f"{self.prefix}.dead.", f"{self.prefix}.deliver.", 1)
        await self.js.publish(subject, m.data, headers={"Nats-Msg-Id": f"{message_id}:replay:{seq}"})
        await self.js.delete_msg(self.dlq, seq)
        metrics.QUEUE_DEPTH.labels(self.stream).inc()
        return {"messageId": message_id, "status": "queued"}

    async def queue_depth(self) -> int:
        info = await self.sub.consumer_info()
        return int(info.num_pending + info.num_ack_pending)
