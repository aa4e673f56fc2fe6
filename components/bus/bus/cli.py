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


def seed_samples(conninfo: str = "", bodysystems_url: str | None = None, clients: list[str] | None = None,
                 wait_s: float = 60.0) -> dict[str, Any]:
    """Register the simulated body systems (components/bodysystems) as members, for journeys on a stack.

    cra/population (REST, OpenAPI) service ``persons``; mola/landregistry (SOAP, WSDL) service ``parcels``;
    ``<body>/inbox`` service ``notices`` for each of the 26 bodies (payment notices). Client systems (setting
    ``sample_clients``, default ``moct/portal,mof/payment``) get access rights to all of them.
    """
    import asyncio
    import os
    import time

    import httpx
    from govcloud_common.settings import Settings
    from psycopg_pool import AsyncConnectionPool

    from bus.registry import Registry

    bs = (bodysystems_url or os.environ.get("GOVCLOUD_URL_BODYSYSTEMS", "")).rstrip("/")
    if not bs:
        return {"samples": "skipped: GOVCLOUD_URL_BODYSYSTEMS not set"}
    clients = clients or [c.strip() for c in Settings.setting("sample_clients", "moct/portal,mof/payment").split(",")
                          if c.strip()]
    deadline = time.monotonic() + wait_s
    while True:  # bootstrap may run before bodysystems is up: a bounded wait for its descriptions
        try:
            openapi = httpx.get(f"{bs}/cra/population/openapi.json", timeout=5).raise_for_status().text
            wsdl = httpx.get(f"{bs}/mola/landregistry/soap?wsdl", timeout=5).raise_for_status().text
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)

    async def register() -> dict[str, Any]:
        pool = AsyncConnectionPool(conninfo, min_size=1, max_size=2, open=False)
        await pool.open(wait=True)
        reg = Registry(pool)
        try:
            services = []
            await reg.upsert_system("cra", "population", f"{bs}/cra/population", "civil registry (sample, REST)")
            await reg.upsert_service("cra", "population", "persons", "rest", "", openapi,
                                     {"namespace": "urn:govcloud:cra:population"})
            services.append(("cra", "population", "persons"))
            await reg.upsert_system("mola", "landregistry", f"{bs}/mola/landregistry", "land registry (sample, SOAP)")
            await reg.upsert_service("mola", "landregistry", "parcels", "soap", "soap", wsdl)
            services.append(("mola", "landregistry", "parcels"))
            for body in read_bodies():
                await reg.upsert_system(body["id"], "inbox", f"{bs}/{body['id']}/inbox", "payment notices (sample)")
                await reg.upsert_service(body["id"], "inbox", "notices", "rest", "", None, {}, 10_000)
                services.append((body["id"], "inbox", "notices"))
            for client in clients:
                cbody, csystem = client.split("/")
                if (cbody, csystem) not in reg.members:
                    await reg.upsert_system(cbody, csystem, None, "client system")
                for service in services:
                    await reg.grant((cbody, csystem), service)
            return {"services": len(services), "clients": clients}
        finally:
            await pool.close()

    return asyncio.run(register())


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
    sub.add_parser("bootstrap", help="seed-bodies, then register the sample body systems when bodysystems runs")
    v = sub.add_parser("verify-log")
    v.add_argument("--json", action="store_true")
    sub.add_parser("dump")
    sub.add_parser("restore")
    args = p.parse_args(argv)
    if args.cmd == "seed-bodies":
        print(json.dumps({"bodies": seed_bodies()}))
        return 0
    if args.cmd == "bootstrap":
        print(json.dumps({"bodies": seed_bodies(), **seed_samples()}))
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
