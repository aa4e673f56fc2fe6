"""Where a service's fee comes from: the portal's catalog (``GET {portal}/api/services/{id}/fee``).

Expected answer: ``{"service_id": "...", "amount": <int, minor units>, "currency": "SYP", "name": "...",
"body_id": "<the competent body>"}``;
404 means the service is unknown. Anything else is an upstream failure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx


class UnknownService(LookupError):
    pass


class FeeSourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Fee:
    service_id: str
    amount: int
    currency: str
    name: str = ""
    body: str | None = None  # the competent body's id (the bus delivers the payment notice to its inbox)


class FeeSource(Protocol):
    async def fee(self, service_id: str) -> Fee: ...


class PortalFeeSource:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client  # base_url = GOVCLOUD_URL_PORTAL

    async def fee(self, service_id: str) -> Fee:
        try:
            resp = await self.client.get(f"/api/services/{quote(service_id, safe='')}/fee")
        except httpx.HTTPError as exc:
            raise FeeSourceError(f"portal unreachable: {type(exc).__name__}") from exc
        if resp.status_code == 404:
            raise UnknownService(service_id)
        if resp.status_code != 200:
            raise FeeSourceError(f"portal answered HTTP {resp.status_code}")
        try:
            doc = resp.json()
            amount, currency = doc["amount"], doc.get("currency", "SYP")
        except (ValueError, KeyError, TypeError) as exc:
            raise FeeSourceError("portal fee answer is malformed") from exc
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or currency != "SYP":
            raise FeeSourceError(f"portal fee is not a positive integer amount in SYP: {amount!r} {currency!r}")
        body = doc.get("body_id")
        body = body if isinstance(body, str) and re.fullmatch(r"[a-z][a-z0-9]{1,20}", body) else None
        return Fee(service_id, amount, currency, str(doc.get("name", "")), body)


class CachedFeeSource:
    """Remembers each service's fee for ``ttl_s`` seconds (the catalog changes fees rarely; a change is picked up
    within the TTL). Unknown services and failures are not cached."""

    def __init__(self, inner: FeeSource, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.ttl_s, self.clock = inner, ttl_s, clock
        self._cache: dict[str, tuple[float, Fee]] = {}

    async def fee(self, service_id: str) -> Fee:
        hit = self._cache.get(service_id)
        now = self.clock()
        if hit and now - hit[0] < self.ttl_s:
            return hit[1]
        fee = await self.inner.fee(service_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[service_id] = (now, fee)
        return fee
