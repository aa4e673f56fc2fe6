"""One migrated database with the CA hierarchy for the whole session (django-ca's migrations take seconds)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

ENV = {
    "GOVCLOUD_DOMAIN": "gov.test",
    "GOVCLOUD_SECRET_ADMIN_TOKEN": "test-admin-token-0123456789",
    "GOVCLOUD_SECRET_KEY_PASSPHRASE": "test-key-passphrase-0123456789",
    "GOVCLOUD_SECRET_ROOT_EXPORT_PASSPHRASE": "test-export-passphrase-0123456789",
    "GOVCLOUD_SECRET_CA_TOKEN": "test-platform-issuer-token-0123456789",
    "GOVCLOUD_SETTING_PUBLIC_HOST": "ca.gov.test:18030",
    "GOVCLOUD_SETTING_CONN_MAX_AGE": "0",
    "DJANGO_SETTINGS_MODULE": "ca.settings",
}
ADMIN = {"Authorization": f"Bearer {ENV['GOVCLOUD_SECRET_ADMIN_TOKEN']}"}
ISSUER = {"Authorization": f"Bearer {ENV['GOVCLOUD_SECRET_CA_TOKEN']}"}


@pytest.fixture(scope="session")
def ca_db(pg_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """PG* and secrets in the environment, Django set up, migrated and bootstrapped once."""
    name = "ca_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**ENV, "PGHOST": str(pg_server.socket_dir), "PGPORT": str(pg_server.port), "PGDATABASE": name,
           "PGUSER": "postgres"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("PGPASSWORD", raising=False)
        import django

        django.setup()
        from ca.__main__ import migrate
        from ca.hierarchy import ensure_hierarchy

        migrate()
        first = ensure_hierarchy()
        assert first == {"root": "created", "platform": "created", "citizen": "created"}
        yield pg_server.dsn(name)
        from django.db import connections

        connections.close_all()


@pytest.fixture(scope="session")
def client(ca_db):  # type: ignore[no-untyped-def]
    from ca.asgi import build
    from fastapi.testclient import TestClient

    with TestClient(build(maintenance_interval=0)) as c:
        yield c


@pytest.fixture(scope="session")
def pki(client, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The CA certificates on disk for openssl."""
    d = tmp_path_factory.mktemp("pki")
    cas = {c["name"]: c for c in client.get("/api/v1/cas").json()}
    for name, doc in cas.items():
        (d / f"{name}.pem").write_text(doc["certificate"])
    return d, cas


@pytest.fixture(scope="session")
def served(ca_db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The real server on the session database: ``python -m ca serve`` with 2 uvicorn workers. Ready when both
    workers announced their OCSP listener (ca.ocsp.Listener) on PostgreSQL; the socket is bound before that."""
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GOVCLOUD_PORT_HTTP": str(port), "GOVCLOUD_SETTING_WORKERS": "2",
           "GOVCLOUD_SETTING_MAINTENANCE_SECONDS": "0", "NO_PROXY": "*",
           "PYTHONPATH": f"{here}{os.pathsep}{here.parent / 'common'}"}
    with tempfile.TemporaryFile() as err, psycopg.connect(ca_db, autocommit=True) as conn:
        conn.execute("LISTEN govcloud_ca_ocsp_ack")
        proc = subprocess.Popen([sys.executable, "-m", "ca", "serve"], env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        workers: set[str] = set()
        deadline = time.monotonic() + 90
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            for note in conn.notifies(timeout=1.0, stop_after=1):
                kind, _, rest = note.payload.partition(":")
                pid, _, parent = rest.partition(":")
                if kind == "listening" and parent == str(proc.pid):
                    workers.add(pid)
        if len(workers) < 2:
            proc.kill()
            proc.wait(timeout=10)
            err.seek(0)
            pytest.fail(f"the CA server did not start 2 workers: {err.read().decode(errors='replace')[-3000:]}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
