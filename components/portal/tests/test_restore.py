"""A pg_dump of the portal database restores into an empty database (pg_restore runs with an empty search_path)."""

from __future__ import annotations

import subprocess
import uuid

import psycopg
from govcloud_common import db
from govcloud_common.testing import PG_BIN


def test_dump_restores_into_an_empty_database(pg_server, pg_dsn) -> None:  # type: ignore[no-untyped-def]
    db.migrate("portal", pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO bodies (id, type, name_en, name_ar) VALUES ('moi', 'ministry', 'Interior', 'الداخلية')")
        conn.execute("INSERT INTO payment_events (order_id, event, payload) VALUES ('PO1', 'order.paid', '{}')")
        conn.execute("INSERT INTO payment_orders (order_id, service_id, service_known, status, amount, currency, at) "
                     "VALUES ('PO1', 'moi-0001', false, 'paid', 2500, 'SYP', now())")
    dump = subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-d", pg_dsn], check=True, capture_output=True).stdout
    target = "r_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target}"')
    restored = subprocess.run([str(PG_BIN / "pg_restore"), "--exit-on-error", "-d", pg_server.dsn(target)],
                              input=dump, capture_output=True, check=False)
    assert restored.returncode == 0, restored.stderr.decode()
    with psycopg.connect(pg_server.dsn(target)) as conn:
        assert conn.execute("SELECT count(*) FROM bodies").fetchone() == (1,)
        assert conn.execute("SELECT order_id, status FROM payment_orders JOIN payment_events USING (order_id)"
                            ).fetchall() == [("PO1", "paid")]
