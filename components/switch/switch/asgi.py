"""The simulator's ASGI app as uvicorn imports it (``switch.asgi:app``), once in each worker process."""

from switch.__main__ import app_from_env

app = app_from_env()
