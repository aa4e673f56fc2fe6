"""Fixtures: one migrated + seeded catalog per session, cloned per test that writes (CREATE DATABASE ... TEMPLATE)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from govcloud_common import db
from govcloud_common.testing import PgServer
from portal.app import build_app
from portal.seed import seed

ADMIN_TOKEN = "portal-test-admin-token"  # a throwaway test server


def _create(pg_server: PgServer, name: str, template: str | None = None) -> str:
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return pg_server.dsn(name)


def _drop(pg_server: PgServer, name: str) -> None:
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def seeded_template(pg_server: PgServer) -> Iterator[str]:
    """Name of a database holding the migrated, seeded catalog; only ever used as a template."""
    name = "portal_tpl_" + uuid.uuid4().hex[:8]
    dsn = _create(pg_server, name)
    db.migrate("portal", dsn)
    seed(dsn)
    yield name
    _drop(pg_server, name)


@pytest.fixture(scope="session")
def catalog_dsn(pg_server: PgServer, seeded_template: str) -> Iterator[str]:
    """A seeded catalog shared by read-only tests."""
    name = "portal_ro_" + uuid.uuid4().hex[:8]
    yield _create(pg_server, name, seeded_template)
    _drop(pg_server, name)


@pytest.fixture
def seeded_dsn(pg_server: PgServer, seeded_template: str) -> Iterator[str]:
    """A private copy of the seeded catalog for a test that writes."""
    name = "portal_rw_" + uuid.uuid4().hex[:8]
    yield _create(pg_server, name, seeded_template)
    _drop(pg_server, name)


@pytest.fixture(scope="session")
def reader(catalog_dsn: str) -> Iterator[TestClient]:
    with TestClient(build_app(catalog_dsn, admin_token=ADMIN_TOKEN, pool_size=4)) as client:
        yield client


@pytest.fixture
def writer(seeded_dsn: str) -> Iterator[TestClient]:
    with TestClient(build_app(seeded_dsn, admin_token=ADMIN_TOKEN, feedback_per_minute=1000, pool_size=4)) as client:
        yield client


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
