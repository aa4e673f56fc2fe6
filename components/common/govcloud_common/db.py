"""PostgreSQL access: a psycopg pool from libpq's PG* variables, and ordered SQL migrations."""

from __future__ import annotations

import logging
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

log = logging.getLogger(__name__)
_LOCK = 7_221_001  # advisory lock id shared by every migrator: one replica migrates, others wait


def pool(min_size: int = 1, max_size: int = 8, conninfo: str = "") -> ConnectionPool:
    """Connection pool configured by PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD (or ``conninfo``)."""
    return ConnectionPool(conninfo, min_size=min_size, max_size=max_size, open=True, kwargs={"autocommit": False})


def async_pool(min_size: int = 1, max_size: int = 8, conninfo: str = "") -> AsyncConnectionPool:
    return AsyncConnectionPool(conninfo, min_size=min_size, max_size=max_size, open=False)


def _scripts(package: str) -> list[Traversable]:
    root = resources.files(package).joinpath("migrations")
    return sorted((p for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)


def migrate(package: str, conninfo: str = "", before: str | None = None) -> list[str]:
    """Apply ``<package>/migrations/NNN_name.sql`` in order, each once, each in its own transaction; with ``before``,
    only those whose names sort before it (a database at an older schema, for tests of what comes after)."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for script in _scripts(package):
                if script.name in done or (before is not None and script.name >= before):
                    continue
                with conn.transaction():
                    conn.execute(script.read_text(encoding="utf-8"))  # type: ignore[arg-type]
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (script.name,))
                applied.append(script.name)
                log.info("migration applied", extra={"fields": {"migration": script.name}})
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    return applied
