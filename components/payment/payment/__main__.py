"""Run the payment gateway per the component contract."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import httpx
import psycopg
from fastapi import FastAPI
from govcloud_common import db, logs
from govcloud_common.aioclient import AioClient
from govcloud_common.service import serve
from govcloud_common.settings import Settings

from payment.app import build_app
from payment.fees import CachedFeeSource, PortalFeeSource
from payment.gateway import PaymentConfig
from payment.notify import BusNotify, NotifyConfig
from payment.receipts import KeySigner, ReceiptSigner, local_chain

log = logging.getLogger("payment")


def receipt_signer() -> ReceiptSigner:
    """The CA-certified signer when the platform CA is wired (GOVCLOUD_URL_CA), else a development chain kept in the
    database (so receipts stay verifiable across restarts)."""
    if os.environ.get("GOVCLOUD_URL_CA") and os.environ.get("GOVCLOUD_SECRET_CA_TOKEN"):
        from payment.ca_signer import signer_from_ca

        return signer_from_ca(Settings.secret("ca-token"))
    with psycopg.connect("", autocommit=True) as conn:
        row = conn.execute("SELECT key_pem, chain FROM receipt_signer WHERE id = 1").fetchone()
        if row:
            return KeySigner.from_pem(row[0], list(row[1]))
        signer, _root = local_chain("govcloud payment (development)")
        conn.execute("INSERT INTO receipt_signer (id, key_pem, chain) VALUES (1, %s, %s) ON CONFLICT DO NOTHING",
                     (signer.key_pem(), signer.chain_pem()))
        row = conn.execute("SELECT key_pem, chain FROM receipt_signer WHERE id = 1").fetchone()
        assert row is not None
        return KeySigner.from_pem(row[0], list(row[1]))


LIMIT = 64  # keep-alive connections per upstream


def bus_notify() -> BusNotify | None:
    """The gateway as the bus member ``<system>.<body>`` (setting ``bus-member``, default ``payment.mof``) when the
    stack wires the bus (``calls: [bus]``) and the CA: a bus-client certificate for a key made here, every start."""
    url = os.environ.get("GOVCLOUD_URL_BUS_MTLS")
    if not url or not os.environ.get("GOVCLOUD_URL_CA") or not os.environ.get("GOVCLOUD_SECRET_CA_TOKEN"):
        return None
    import ssl
    import tempfile
    from urllib.parse import urlsplit

    from govcloud_common.ca_client import request_certificate

    domain = os.environ.get("GOVCLOUD_DOMAIN", "")
    member = Settings.setting("bus-member", "payment.mof")
    issued = request_certificate("bus-client", [f"{member}.bus.{domain}"], token=Settings.secret("ca-token"))
    files = issued.write(tempfile.mkdtemp(prefix="payment-bus-"))  # key.pem 0600, private to this process
    ctx = ssl.create_default_context(cafile=str(files["chain"]))
    ctx.load_cert_chain(files["cert"], files["key"])
    log.info("bus member %s, certificate serial %s", member, issued.serial)
    return BusNotify(httpx.AsyncClient(verify=ctx, timeout=10.0), f"https://{urlsplit(url).netloc}",
                     server_name=Settings.setting("bus-server-name", f"bus.{domain}"))


def app_from_env() -> FastAPI:
    """The gateway as configured by the contract's environment; built once per uvicorn worker (``payment.asgi``).
    The switch, the portal and the billers are called through pooled keep-alive aiohttp clients
    (``govcloud_common.aioclient``): httpx cost ~15x more CPU per request on the hot path."""
    logs.configure("payment")
    cfg = PaymentConfig(
        conninfo="", key=Settings.secret("callback-key"), admin_token=Settings.secret("admin-token"),
        switch=AioClient(Settings.url("switch"), timeout=10.0, limit=LIMIT),  # type: ignore[arg-type]
        fees=CachedFeeSource(
            PortalFeeSource(AioClient(Settings.url("portal"), timeout=5.0, limit=LIMIT)),  # type: ignore[arg-type]
            ttl_s=float(Settings.setting("fee-cache-s", "60"))),
        signer=receipt_signer(),
        order_ttl=timedelta(minutes=int(Settings.setting("order-ttl-minutes", "90"))),
        pool_max=int(Settings.setting("pool-max", "16")), run_workers=True,
        rtp_batch=int(Settings.setting("rtp-batch", "64")),
        create_batch=int(Settings.setting("create-batch", "64")),
        worker_interval_s=float(Settings.setting("worker-interval-s", "1")),
        notify=NotifyConfig(client=AioClient(timeout=10.0, limit=LIMIT),  # type: ignore[arg-type]
                            portal_url=Settings.url("portal"), portal_key=Settings.secret("notify-key"),
                            bus=bus_notify()))
    return build_app(cfg)


def main() -> None:
    logs.configure("payment")
    db.migrate("payment")
    serve("payment.asgi:app", default_port=18050)  # the workers setting: that many processes share the port


if __name__ == "__main__":
    main()
