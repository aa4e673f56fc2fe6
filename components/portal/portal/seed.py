"""Seed the catalog once (``python -m portal.seed``, the component's bootstrap): idempotent and all-or-nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from govcloud_common.bodies import Body, load_bodies
from psycopg.types.json import Jsonb

from portal import catalog

log = logging.getLogger("portal.seed")
_SEED_LOCK = 7_221_060

SERVICE_COLUMNS = (
    "id", "body_id", "status", "name_en", "name_ar", "description_en", "description_ar", "category", "life_events",
    "channels", "fee_syp", "fee_legal_basis_en", "fee_legal_basis_ar", "payment_channels", "processing_time",
    "processing_hours", "requirements", "steps", "contact", "legal_resources", "documents_text", "keywords_text",
)
JSON_COLUMNS = {"requirements", "steps", "contact", "legal_resources"}


def documents_text(requirements: Sequence[dict[str, object]]) -> str:
    return " ".join(f"{r['en']} {r['ar']}" for r in requirements)


def keywords_text(category: str, life_events: Sequence[str]) -> str:
    """Category and life-event labels in both languages: "احوال" finds the civil-status services."""
    labels = [catalog.CATEGORIES.get(category, (category, ""))]
    labels += [catalog.LIFE_EVENTS.get(e, (e, "")) for e in life_events]
    return " ".join(f"{en} {ar}" for en, ar in labels)


def service_row(service: dict[str, object]) -> tuple[object, ...]:
    values = dict(service)
    values["documents_text"] = documents_text(values["requirements"])  # type: ignore[arg-type]
    values["keywords_text"] = keywords_text(values["category"], values["life_events"])  # type: ignore[arg-type]
    return tuple(Jsonb(values[c]) if c in JSON_COLUMNS else values[c] for c in SERVICE_COLUMNS)


def upsert_bodies(conn: psycopg.Connection, bodies: Sequence[Body]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bodies (id, type, name_en, name_ar) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET type = excluded.type, name_en = excluded.name_en, "
            "name_ar = excluded.name_ar",
            [(b.id, b.type, b.en, b.ar) for b in bodies],
        )
        cur.executemany("UPDATE bodies SET parent_id = %s WHERE id = %s", [(b.parent, b.id) for b in bodies])


def seed(conninfo: str = "", bodies: Sequence[Body] | None = None) -> dict[str, object]:
    """Insert the generated catalog unless it is already there; returns what was done."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SEED_LOCK,))
        row = conn.execute("SELECT digest, services, published, bodies FROM catalog_seed").fetchone()
        if row:
            return {"seeded": False, "digest": row[0], "services": row[1], "published": row[2], "bodies": row[3]}
        bodies = tuple(bodies or load_bodies())
        services = catalog.generate(bodies)
        digest = catalog.catalog_digest(services)
        upsert_bodies(conn, bodies)
        columns = ", ".join(SERVICE_COLUMNS)
        conn.execute(f"CREATE TEMP TABLE seed_services ON COMMIT DROP AS SELECT {columns} FROM services LIMIT 0")
        with conn.cursor() as cur, cur.copy(f"COPY seed_services ({columns}) FROM STDIN") as copy:
            for s in services:
                copy.write_row(service_row(s.as_dict()))
        conn.execute(f"INSERT INTO services ({columns}) SELECT {columns} FROM seed_services "
                     "ON CONFLICT (id) DO NOTHING")
        published = sum(s.status == "published" for s in services)
        conn.execute(
            "INSERT INTO catalog_seed (generator_version, seed, digest, services, published, bodies) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (catalog.GENERATOR_VERSION, catalog.SEED, digest, len(services), published, len(bodies)),
        )
    with psycopg.connect(conninfo, autocommit=True) as conn:  # planner statistics now, not when autovacuum wakes
        conn.execute("ANALYZE bodies, services")
    result = {"seeded": True, "digest": digest, "services": len(services), "published": published,
              "bodies": len(bodies)}
    log.info("catalog seeded", extra={"fields": result})
    return result


def main() -> None:
    from govcloud_common import db, logs

    logs.configure("portal")
    db.migrate("portal")
    seed()


if __name__ == "__main__":
    main()
