"""Seeding a real PostgreSQL: exact counts, the generator's data, idempotent, readiness follows it."""

from __future__ import annotations

import logging

import psycopg
from fastapi.testclient import TestClient
from govcloud_common import db
from govcloud_common.bodies import load_bodies
from portal import catalog
from portal.app import build_app
from portal.seed import main as seed_main
from portal.seed import seed


def test_seed_counts_and_idempotence(pg_dsn: str) -> None:
    # the bootstrap command (python -m portal.seed) against the PG* variables pg_dsn sets, as in a container
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        seed_main()
    finally:
        root.handlers[:], root.level = handlers, level
    assert db.migrate("portal", pg_dsn) == []
    expected = catalog.catalog_digest(catalog.generate(load_bodies()))
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT digest, services, published, bodies FROM catalog_seed").fetchone() == (
            expected, 4246, 2894, 26)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM services").fetchone()[0] == 4246
        assert conn.execute("SELECT count(*) FROM services WHERE status = 'published'").fetchone()[0] == 2894
        assert conn.execute("SELECT count(*) FROM bodies").fetchone()[0] == 26
        assert conn.execute("SELECT count(DISTINCT body_id) FROM services").fetchone()[0] == 26
        assert conn.execute("SELECT parent_id FROM bodies WHERE id = 'cra'").fetchone()[0] == "moi"
        conn.execute("UPDATE services SET name_en = 'edited by an administrator' WHERE id = 'moi-0001'")
    second = seed(pg_dsn)
    assert second["seeded"] is False and second["digest"] == expected
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM services").fetchone()[0] == 4246
        assert conn.execute("SELECT name_en FROM services WHERE id = 'moi-0001'").fetchone()[0] == (
            "edited by an administrator")


def test_database_matches_generator(catalog_dsn: str) -> None:
    generated = {s.id: s for s in catalog.generate(load_bodies())}
    with psycopg.connect(catalog_dsn) as conn:
        rows = conn.execute("SELECT id, status, fee_syp, processing_time, name_ar FROM services").fetchall()
    assert len(rows) == len(generated)
    for sid, status, fee, duration, name_ar in rows:
        g = generated[sid]
        assert (status, fee, duration, name_ar) == (g.status, g.fee_syp, g.processing_time, g.name_ar)


def test_readyz_reports_missing_migrations_and_seed(pg_dsn: str) -> None:
    with TestClient(build_app(pg_dsn, admin_token="x")) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert set(r.json()["reasons"]) == {"migrations", "catalog"}
        db.migrate("portal", pg_dsn)
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reasons"] == {"catalog": "catalog not seeded yet (bootstrap: python -m portal.seed)"}


def test_readyz_ready_when_seeded(seeded_dsn: str) -> None:
    with TestClient(build_app(seeded_dsn, admin_token="x")) as client:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == ["catalog", "database", "migrations"]
