"""``python -m bus``: the admin API on the http port and the members' mTLS port, in one process."""

from __future__ import annotations

import asyncio
import logging

from govcloud_common import logs
from govcloud_common.settings import Settings

from bus.app import Bus, BusConfig, admin_app, ensure_certificate
from bus.tlsserver import install_handshake_alerts, mtls_server, plain_server

log = logging.getLogger("bus")


async def run() -> None:
    cfg = BusConfig.from_env()
    log.info("own certificate", extra={"fields": {"certificate": await asyncio.to_thread(ensure_certificate, cfg)}})
    bus = Bus(cfg)
    await bus.start()
    bind = Settings.from_env().bind
    admin = plain_server(admin_app(bus), bind, Settings.port("http", 18070))
    members = mtls_server(bus.router, bind, Settings.port("mtls", 18071), bus.server_context())
    try:
        await asyncio.gather(admin.serve(), members.serve())
    finally:
        await bus.stop()


def main() -> None:
    logs.configure("bus")
    # asyncio's own loop (not uvloop): refused TLS clients then get the alert that explains why
    if not install_handshake_alerts():
        log.warning("TLS alerts on refused handshakes unavailable with this Python")
    asyncio.run(run())


if __name__ == "__main__":
    main()
