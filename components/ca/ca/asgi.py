"""The ASGI application: govcloud's probes and metrics, our API, and django-ca's OCSP/CRL/issuer views."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from django_ca.models import CertificateAuthority  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from govcloud_common.service import background, create_app  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from ca import hierarchy, ocsp  # noqa: E402
from ca.api import router  # noqa: E402

log = logging.getLogger("ca")


def _sync(fn):  # type: ignore[no-untyped-def]
    def run():  # type: ignore[no-untyped-def]
        close_old_connections()
        try:
            return fn()
        finally:
            close_old_connections()
    return run


def _db() -> str | None:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return None


def _cas() -> str | None:
    cas = {ca.name: ca for ca in CertificateAuthority.objects.filter(name__in=hierarchy.NAMES)}
    missing = sorted(set(hierarchy.NAMES) - set(cas))
    if missing:
        return f"CAs missing (run the bootstrap): {missing}"
    for ca in cas.values():
        hierarchy.signature_check(ca)  # raises with the reason
    return None


def _crl() -> str | None:
    now = datetime.now(tz=UTC)
    stale = []
    for ca in CertificateAuthority.objects.filter(name__in=hierarchy.NAMES):
        crl = hierarchy.newest_crl(ca)
        if crl is None or crl.next_update is None or crl.next_update <= now:
            stale.append(ca.name)
    return f"CRL missing or expired: {stale}" if stale else None


async def check_bodies() -> str | None:
    """bus-client naming needs the government bodies (GOVCLOUD_SETTING_BODIES or GOVCLOUD_BODIES_FILE)."""
    from ca.profiles import bodies

    return None if bodies() else "no government bodies configured"


async def check_db() -> str | None:
    return await run_in_threadpool(_sync(_db))


async def check_cas() -> str | None:
    return await run_in_threadpool(_sync(_cas))


async def check_crl() -> str | None:
    return await run_in_threadpool(_sync(_crl))


async def _maintenance(interval: float) -> None:
    """CRLs, OCSP delegate keys and pre-produced OCSP responses on a schedule (revocations act at once)."""
    while True:
        try:
            done = await run_in_threadpool(_sync(hierarchy.maintain_once))
            if done and any(done.values()):
                log.info("maintenance", extra={"fields": done})
        except Exception:
            log.exception("maintenance failed")
        await asyncio.sleep(interval)


def build(maintenance_interval: float | None = None) -> ocsp.Front:
    """The FastAPI application (probes, our API, django-ca's views) behind the OCSP front (ca.ocsp.Front)."""
    interval = maintenance_interval if maintenance_interval is not None else float(
        os.environ.get("GOVCLOUD_SETTING_MAINTENANCE_SECONDS", "600"))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        listener = ocsp.Listener()  # this process's OCSP memory is evicted on every revocation, any worker's
        listener.start()
        try:
            async with background((lambda: _maintenance(interval)) if interval > 0 else None):
                yield
        finally:
            await run_in_threadpool(listener.stop)

    app = create_app("ca", checks={"database": check_db, "cas": check_cas, "crl": check_crl,
                                         "bodies": check_bodies}, lifespan=lifespan)
    app.include_router(router)
    app.mount("/", get_asgi_application())  # django-ca: /ocsp/<ca>/ca/, /crl/<ca>/, nonce OCSP via ca.ocsp.live
    return ocsp.Front(app)  # /ocsp/<ca>/cert/ (POST and GET) and /issuer/<ca>.der without the Django stack


app = build()
