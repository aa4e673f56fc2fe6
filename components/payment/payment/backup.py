"""Backup hook of the ledger database: ``python -m payment.backup dump|restore|verify``.

dump writes every table (COPY, text format) to stdout as frames ``{"table": t, "columns": [...], "bytes": n}\\n`` + n
bytes; restore reads that from stdin into a migrated database (emptied first) in one transaction, naming the columns,
so a dump from before a migration that added columns restores after it (they take their defaults) - kept balances are recomputed from
the entries by the ledger's own trigger, and the deferred balance check re-proves every transaction sums to zero;
verify prints the books' invariants as JSON and exits 1 when they do not hold.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import BinaryIO

import psycopg
from govcloud_common import db

from payment import ledger

# foreign-key order; schema_migrations is recreated by migrate()
TABLES = ["accounts", "channels", "billers", "bills", "orders", "ledger_tx", "entries", "idempotency", "callbacks",
          "receipts", "receipt_signer", "reconciliations", "notifications"]
SEQUENCES = {"ledger_tx": "id", "entries": "id", "reconciliations": "id", "notifications": "id"}


def dump(out: BinaryIO, conninfo: str = "") -> dict[str, int]:
    sizes: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one consistent snapshot
        for table in TABLES:
            cols = _columns(conn, table)
            with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) TO STDOUT") as copy:
                for chunk in copy:
                    data = bytes(chunk)
                    out.write(json.dumps({"table": table, "columns": cols, "bytes": len(data)}).encode() + b"\n" + data)
                    sizes[table] = sizes.get(table, 0) + len(data)
        out.write(json.dumps({"end": True}).encode() + b"\n")
    out.flush()
    return sizes


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                                       "AND NOT attisdropped ORDER BY attnum", (table,))]


def _copy_columns(conn: psycopg.Connection, table: str, dumped: list[str] | None, chunks: list[bytes]) -> list[str]:
    """The columns a table's frames hold: as the frames name them, or (dumps from before they did) the first as many
    of today's columns as a row has fields - migrations only ever add columns, at the end."""
    have = _columns(conn, table)
    if dumped is None:
        return have[: chunks[0].split(b"\n", 1)[0].count(b"\t") + 1] if chunks else have
    unknown = [c for c in dumped if c not in have]
    if unknown:
        raise ValueError(f"{table}: the backup has columns this schema does not ({', '.join(unknown)}): "
                         "a backup from newer code")
    return dumped


def _frames(inp: BinaryIO) -> tuple[dict[str, list[bytes]], dict[str, list[str]]]:
    tables: dict[str, list[bytes]] = {}
    columns: dict[str, list[str]] = {}
    while True:
        header = inp.readline()
        if not header:
            raise ValueError("truncated backup: no end marker")
        frame = json.loads(header)
        if frame.get("end"):
            return tables, columns
        if frame.get("table") not in TABLES:
            raise ValueError(f"unknown table in backup: {frame.get('table')!r}")
        data = inp.read(frame["bytes"])
        if len(data) != frame["bytes"]:
            raise ValueError("truncated backup")
        tables.setdefault(frame["table"], []).append(data)
        if "columns" in frame:
            columns[frame["table"]] = [str(c) for c in frame["columns"]]


def restore(inp: BinaryIO, conninfo: str = "") -> dict[str, int]:
    tables, columns = _frames(inp)  # read (and check) the whole backup before touching the database
    db.migrate("payment", conninfo=conninfo)
    rows: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        for table in TABLES:
            cols = _copy_columns(conn, table, columns.get(table), tables.get(table, []))
            with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for chunk in tables.get(table, []):
                    copy.write(chunk)
            if table == "accounts":  # kept balances are recomputed from the entries as they are replayed
                conn.execute("UPDATE accounts SET balance = 0")
        for table, col in SEQUENCES.items():
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'),"
                         f" coalesce((SELECT max({col}) FROM {table}), 0) + 1, false)")
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            rows[table] = int(row[0]) if row else 0
    return rows


async def averify(conninfo: str = "") -> dict[str, object]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        check = await ledger.check(conn)
        orders = dict(await (await conn.execute("SELECT status, count(*) FROM orders GROUP BY 1")).fetchall())
        receivable = await ledger.balance(conn, ledger.RECEIVABLE)
    return {**check, "orders": orders, "receivable": receivable}


def verify(conninfo: str = "") -> dict[str, object]:
    return asyncio.run(averify(conninfo))


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "dump":
        dump(sys.stdout.buffer)
    elif cmd == "restore":
        print(json.dumps(restore(sys.stdin.buffer)), file=sys.stderr)
    elif cmd == "verify":
        result = verify()
        print(json.dumps(result))
        return 0 if result["balanced"] else 1
    else:
        print("usage: python -m payment.backup dump|restore|verify", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
