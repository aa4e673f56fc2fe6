"""The app as uvicorn's workers import it (``python -m portal`` serves ``portal.asgi:app``)."""

from __future__ import annotations

import os

from govcloud_common import logs

from portal.app import build_app

logs.configure("portal", os.environ.get("GOVCLOUD_LOG_LEVEL", "INFO"))
app = build_app()
