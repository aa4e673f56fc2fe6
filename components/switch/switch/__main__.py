"""Run the switch simulator per the component contract."""

from __future__ import annotations

from fastapi import FastAPI
from govcloud_common import db, logs
from govcloud_common.aioclient import AioClient
from govcloud_common.service import serve
from govcloud_common.settings import Settings

from switch.app import SwitchConfig, build_app


def app_from_env() -> FastAPI:
    """The simulator as configured by the environment; built once per uvicorn worker (``switch.asgi``). Callbacks
    go out through a pooled keep-alive aiohttp client (``govcloud_common.aioclient``), up to ``callback-batch``
    (default 64; 1 = the single form only) decisions per POST (PROTOCOL.md §2)."""
    logs.configure("switch")
    payment = AioClient(Settings.url("payment"), timeout=10.0, limit=64)
    cfg = SwitchConfig(conninfo="", key=Settings.secret("callback-key"), admin_token=Settings.secret("admin-token"),
                       payment=payment, run_dispatcher=True,  # type: ignore[arg-type]
                       dispatch_interval_s=float(Settings.setting("dispatch-interval-s", "0.2")),
                       pool_max=int(Settings.setting("pool-max", "8")),
                       callback_batch=int(Settings.setting("callback-batch", "64")))
    return build_app(cfg)


def main() -> None:
    logs.configure("switch")
    db.migrate("switch")
    serve("switch.asgi:app", default_port=18040)  # the workers setting: that many processes share the port


if __name__ == "__main__":
    main()
