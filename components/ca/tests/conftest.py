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
