"""payment's backup hook across migration 004 (reconciliations gains two columns): a ledger dumped under migrations
001-003 restores into code that has 004 and later (fresh database, and over the old one, which restore migrates
first): every row comes back, the new columns take their defaults, the books are the same - also from a dump made
before the frames named their columns. A dump with a column this schema does not have is refused, nothing changed."""

from __future__ import annotations

import io
import json
import uuid

import psycopg
import pytest
from govcloud_common.db import _scripts, migrate
from payment import backup

ADDS_COLUMNS = "004_reconciliation_source.sql"


def test_a_ledger_dumped_before_004_restores_after_it(pg_server) -> None:  # type: ignore[no-untyped-def]
    names = ["t_" + uuid.uuid4().hex[:12] for _ in range(2)]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    old, fresh = (pg_server.dsn(n) for n in names)
    try:
        migrate("payment", conninfo=old, before=ADDS_COLUMNS)
        with psycopg.connect(old, autocommit=True) as conn, conn.transaction():
            conn.execute("INSERT INTO reconciliations (day, created_at, matched, mismatches) "
                         "VALUES ('2026-12-06', now(), 3, '[]'), ('2026-12-07', now(), 4, '[{\"line\": 2}]')")
            tx = conn.execute("INSERT INTO ledger_tx (kind, created_at) VALUES ('test', now()) RETURNING id")
            tx_id = tx.fetchone()[0]  # type: ignore[index]
            conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'switch:pending', 700), "
                         "(%s, 'switch:receivable', -700)", (tx_id, tx_id))
        out = io.BytesIO()
        backup.dump(out, old)
        dumps = [out.getvalue(), reframe(out.getvalue(), lambda f: {k: v for k, v in f.items() if k != "columns"})]
        for dumped, target in ((dumps[0], fresh), (dumps[0], old), (dumps[1], fresh)):
            rows = backup.restore(io.BytesIO(dumped), target)
            assert rows["reconciliations"] == 2 and rows["entries"] == 2
            with psycopg.connect(target) as conn:
                assert conn.execute("SELECT day::text, matched, source, settlement_sha256 FROM reconciliations "
                                    "ORDER BY id").fetchall() == [("2026-12-06", 3, "switch", None),
                                                                  ("2026-12-07", 4, "switch", None)]
                assert conn.execute("SELECT max(name) FROM schema_migrations").fetchone() == (_scripts("payment")[-1].name,)
            assert backup.verify(target)["balanced"]
        newer = reframe(dumps[0], lambda f: {**f, "columns": [*f["columns"], "from_newer_code"]}
                        if f.get("table") == "channels" else f)
        with pytest.raises(ValueError, match=r"^channels: the backup has columns this schema does not "
                                             r"\(from_newer_code\): a backup from newer code$"):
            backup.restore(io.BytesIO(newer), fresh)
        assert backup.verify(fresh)["balanced"]
        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT count(*) FROM reconciliations").fetchone() == (2,)  # as it was
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reframe(dumped: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The same dump with each frame header changed by ``change``."""
    src, out = io.BytesIO(dumped), io.BytesIO()
    while header := src.readline():
        frame = json.loads(header)
        out.write(json.dumps(change(frame)).encode() + b"\n")
        if "bytes" in frame:
            out.write(src.read(frame["bytes"]))
    return out.getvalue()
