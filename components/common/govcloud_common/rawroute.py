"""Hot endpoints as plain ASGI handlers inside a FastAPI app.

FastAPI's per-request machinery (dependency solving, the request/response wrappers, the endpoint's exit stack) costs
~0.1-0.2 ms of CPU per request. ``add_raw_route`` puts a plain ASGI handler for one method and path in front of the
app's routes: the app's middleware (request ids, metrics, body limit, error handling) still wraps it, and a FastAPI
route declared for the same path keeps describing it in the OpenAPI document (it is never reached). The handler reads
the body itself (``read_body``) and answers with ``respond``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Endpoint:
    """An ASGI app as Starlette's Route takes it (an instance, not a function: no request/response wrapper)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


def add_raw_route(app: FastAPI, path: str, method: str, handler: Handler) -> None:
    app.router.routes.insert(0, Route(path, _Endpoint(handler), methods=[method], include_in_schema=False))


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case), decoded as latin-1 like Starlette does."""
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                  headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
