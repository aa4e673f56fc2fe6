"""Where a service's fee comes from: the portal's catalog (``GET {portal}/api/services/{id}/fee``).

Expected answer: ``{"service_id": "...", "amount": <int, minor units>, "currency": "SYP", "name": "...",
"body_id": "<the competent body>"}``;
404 means the service is unknown. Anything else is an upstream failure.
"""

from __future__ import annotations

import re
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
