"""Run the switch simulator per the component contract."""

from __future__ import annotations

import httpx
from govcloud_common import db, logs
from govcloud_common.service import serve
from govcloud_common.settings import Settings

from switch.app import SwitchConfig, build_app


def main() -> None:
    logs.configure("switch")
    db.migrate("switch")
    payment = httpx.AsyncClient(base_url=Settings.url("payment"), timeout=10.0,
                                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
    cfg = SwitchConfig(conninfo="", key=Settings.secret("callback-key"), admin_token=Settings.secret("admin-token"),
                       payment=payment, run_dispatcher=True,
                       dispatch_interval_s=float(Settings.setting("dispatch-interval-s", "0.2")),
                       pool_max=int(Settings.setting("pool-max", "8")))
    serve(build_app(cfg), default_port=18040)


if __name__ == "__main__":
    main()
