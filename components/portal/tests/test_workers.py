"""``python -m portal`` as a stack runs it: two uvicorn workers, each with its own index, one /metrics for both."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def served(seeded_dsn: str) -> Iterator[tuple[str, datetime]]:
    """The served portal's base URL, and when it started (its workers' connections are newer)."""
    with psycopg.connect(seeded_dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        started: datetime = row[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = conninfo_to_dict(seeded_dsn)
    env = {**os.environ, "PGHOST": str(params["host"]), "PGPORT": str(params["port"]),
           "PGDATABASE": str(params["dbname"]), "PGUSER": str(params["user"]), "GOVCLOUD_PORT_HTTP": str(port),
           "GOVCLOUD_BIND": "127.0.0.1", "GOVCLOUD_SECRET_ADMIN_TOKEN": "t", "GOVCLOUD_LOG_LEVEL": "WARNING",
           "PYTHONPATH": os.pathsep.join(str(ROOT / "components" / c) for c in ("common", "portal"))}
    env.pop("GOVCLOUD_SETTING_WORKERS", None)  # the portal's default
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "portal"], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # polled like the platform's readiness probe
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "portal did not become ready"
            time.sleep(0.2)
        yield base, started
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _search_count(metrics: str) -> float:
    m = re.search(r'^http_requests_total\{method="GET",route="/api/services",status="200"\} (\S+)$', metrics, re.M)
    return float(m.group(1)) if m else 0.0


def test_two_workers_share_the_metrics_and_follow_the_catalog(served: tuple[str, datetime], seeded_dsn: str) -> None:
    base, started = served
    deadline = time.monotonic() + 60
    with psycopg.connect(seeded_dsn, autocommit=True) as conn:
        while True:  # each worker listens for catalog changes (readiness came from whichever answered first)
            # only this server's workers: other tests' apps on the same PostgreSQL may listen too
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN portal_catalog' "
                               "AND datname = current_database() AND backend_start >= %s", (started,)).fetchone()
            if row is not None and row[0] == 2:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
    with httpx.Client(base_url=base, timeout=10) as client:  # new connections: both workers answer some
        for _ in range(40):
            assert client.get("/api/services", params={"q": "passport"}, headers={"Connection": "close"}).json()[
                "total"] > 0
        # whichever worker answers /metrics reports both workers' requests
        counts = {_search_count(client.get("/metrics", headers={"Connection": "close"}).text) for _ in range(6)}
        assert counts == {40.0}
        with psycopg.connect(seeded_dsn, autocommit=True) as conn:
            conn.execute("UPDATE services SET name_en = name_en || ' Plughxyzzy' "
                         "WHERE id = (SELECT min(id) FROM services WHERE status = 'published')")
        deadline = time.monotonic() + 60
        while True:  # every worker reloads on the notification; until then some may answer from the old snapshot
            totals = [client.get("/api/services", params={"q": "plughxyzzy"}, headers={"Connection": "close"})
                      .json()["total"] for _ in range(10)]
            if totals == [1] * 10:
                break
            assert time.monotonic() < deadline, totals
            time.sleep(0.2)
