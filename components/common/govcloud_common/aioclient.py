"""A pooled keep-alive HTTP client for the components' hot paths: the subset of ``httpx.AsyncClient`` they use
(``get``, ``post``, ``request``, ``aclose``; responses with ``status_code``, ``headers``, ``content``, ``text``,
``json()``), over aiohttp.

Why: on the 2-core target httpx 0.28/httpcore spends about 1.9-2.7 ms of CPU per request at 32 concurrent requests
(its pool scans every connection per request, anyio streams), aiohttp about 0.14 ms (measured in one run, same
server; bench/payment_orders.py). Code written against httpx keeps working: transport failures are raised as the
matching ``httpx`` exceptions (``ConnectError``, ``ReadTimeout``, ``TransportError``), and the tests still inject
``httpx.AsyncClient`` with ASGI or mock transports.
"""

from __future__ import annotations

import json as _json
import ssl
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDictProxy


class Response:
    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: CIMultiDictProxy[str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.content)


class AioClient:
    """``base_url`` is prefixed to relative URLs; ``limit`` keep-alive connections at most (per client)."""

    def __init__(self, base_url: str = "", timeout: float = 10.0, limit: int = 64,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.limit, self.ssl_context = limit, ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # created on first use, inside the running event loop (each uvicorn worker has its own)
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, ssl=self.ssl_context or True, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def request(self, method: str, url: str, *, content: bytes | None = None, json: Any = None,
                      headers: dict[str, str] | None = None, **_: Any) -> Response:
        full = url if "://" in url else self.base_url + url
        body = content
        hdrs = dict(headers or {})
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
            hdrs.setdefault("content-type", "application/json")
        try:
            async with self._open().request(method, full, data=body, headers=hdrs, allow_redirects=False) as resp:
                return Response(resp.status, resp.headers, await resp.read())
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"{full}: {exc}") from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"{full}: no answer within {self.timeout.total} s") from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(f"{full}: {type(exc).__name__}: {exc}") from exc

    async def get(self, url: str, **kw: Any) -> Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Response:
        return await self.request("POST", url, **kw)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
