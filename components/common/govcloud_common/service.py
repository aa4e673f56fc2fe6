"""The HTTP surface every component shares: /healthz, /readyz with reasons, /metrics, request ids."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

ReadyCheck = Callable[[], Awaitable[str | None]]  # returns None when ok, else the reason

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "route"])


@contextlib.asynccontextmanager
async def background(run: Callable[[], Coroutine[Any, Any, None]] | None) -> AsyncIterator[None]:
    """Run ``run()`` as a task for as long as the block lasts (an app's lifespan); cancel it on the way out."""
    task = asyncio.create_task(run()) if run else None
    try:
        yield
    finally:
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Observe:
    """Request ids and the per-route count and latency, as plain ASGI middleware.

    (Starlette's ``BaseHTTPMiddleware`` runs each request in a task group and streams every response through a
    memory channel: about 0.45 ms of CPU per request, several times the cost of serving a small static file.)
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "") or uuid.uuid4().hex
        start = time.perf_counter()
        status = 500  # the app raised before answering (the server's error handler answers 500)

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)


def create_app(component: str, checks: dict[str, ReadyCheck] | None = None, **kwargs: object) -> FastAPI:
    """A FastAPI app with the platform's probes and metrics; ``checks`` decide readiness."""
    app = FastAPI(title=f"govcloud {component}", **kwargs)  # type: ignore[arg-type]
    ready_checks: dict[str, ReadyCheck] = dict(checks or {})
    app.state.ready_checks = ready_checks

    app.add_middleware(_Observe)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reasons: dict[str, str] = {}
        for name, check in ready_checks.items():
            try:
                reason = await check()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                reasons[name] = reason
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "checks": sorted(ready_checks)})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several workers (serve): the sum over all of them
            from prometheus_client import CollectorRegistry, multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(app: FastAPI | str, port_name: str = "http", default_port: int = 8000, default_workers: int = 1) -> None:
    """Run with uvicorn on the contract's bind address and port.

    ``app`` given as an import string (``"portal.app:app"``) may run in several processes sharing the
    socket: the stack's ``workers`` setting (``GOVCLOUD_SETTING_WORKERS``, default ``default_workers``) says how many. Background
    tasks in the app's lifespan then run once per worker, so they must be safe to run concurrently.
    """
    import uvicorn

    from govcloud_common.settings import Settings

    settings = Settings.from_env()
    workers = int(Settings.setting("workers", str(default_workers))) if isinstance(app, str) else 1
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker would answer /metrics with its own counters only: they share a directory instead (inherited
        # by the workers, which import prometheus_client afresh), and /metrics reports the sum
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="govcloud-metrics-")
    uvicorn.run(app, host=settings.bind, port=Settings.port(port_name, default_port), workers=workers,
                log_config=None, access_log=False)
