"""``python -m bus.cli``: seed-bodies, verify-log, dump / restore (the backup hook: registry + message log).

The lead's ``govcloud bus ...`` commands run these inside the component.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

import psycopg

from bus.msglog import verify_log
from bus.registry import read_bodies

TABLES = ("bodies", "systems", "services", "access_rights", "message_log", "log_seals")


def seed_bodies(conninfo: str = "") -> int:
    from govcloud_common import db

    db.migrate("bus", conninfo)
    entries = sorted(read_bodies(), key=lambda e: e.get("parent") is not None)
    with psycopg.connect(conninfo) as conn:
        for e in entries:
            conn.execute(
                "INSERT INTO bodies (id, type, parent, name_en, name_ar) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, parent = EXCLUDED.parent, "
                "name_en = EXCLUDED.name_en, name_ar = EXCLUDED.name_ar",
                (e["id"], e["type"], e.get("parent"), e["en"], e.get("ar", "")))
    return len(entries)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {"$json": value}
    return value.isoformat() if hasattr(value, "isoformat") else value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "$b64" in value:
        return base64.b64decode(value["$b64"])
    if isinstance(value, dict) and "$json" in value:
        return json.dumps(value["$json"])
    return value


def dump(conninfo: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"format": "govcloud-bus-backup/1", "tables": {}}
    with psycopg.connect(conninfo) as conn:
        for table in TABLES:
            cur = conn.execute(f"SELECT * FROM {table}")
            cols = [d.name for d in cur.description or []]
            out["tables"][table] = {"columns": cols, "rows": [[_encode(v) for v in r] for r in cur]}
    return out


def restore(doc: dict[str, Any], conninfo: str = "") -> None:
    from govcloud_common import db

    db.migrate("bus", conninfo)
    with psycopg.connect(conninfo) as conn:
        conn.execute("TRUNCATE " + ", ".join(reversed(TABLES)) + " CASCADE")
        for table in TABLES:
            data = doc["tables"][table]
            cols = ", ".join(data["columns"])
            marks = ", ".join(["%s"] * len(data["columns"]))
            # bodies reference their parent: insert parents first
            rows = sorted(data["rows"], key=lambda r: r[2] is not None) if table == "bodies" else data["rows"]
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                                [[_decode(v) for v in r] for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bus.cli")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("seed-bodies")
    v = sub.add_parser("verify-log")
    v.add_argument("--json", action="store_true")
    sub.add_parser("dump")
    sub.add_parser("restore")
    args = p.parse_args(argv)
    if args.cmd == "seed-bodies":
        print(json.dumps({"bodies": seed_bodies()}))
        return 0
    if args.cmd == "verify-log":
        report = verify_log()
        if args.json:
            print(json.dumps(report))
        else:
            print(f"{'OK' if report['ok'] else 'TAMPERED'}: {sum(report['records'].values())} records, "
                  f"{report['seals']} seals")
            for problem in report["problems"]:
                print("  " + problem)
        return 0 if report["ok"] else 1
    if args.cmd == "dump":
        json.dump(dump(), sys.stdout)
        return 0
    restore(json.load(sys.stdin))
    report = verify_log()
    print(json.dumps({"restored": True, "log": report}), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
