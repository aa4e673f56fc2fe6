"""The gateway's ASGI app as uvicorn imports it (``payment.asgi:app``), once in each worker process."""

from payment.__main__ import app_from_env

app = app_from_env()
