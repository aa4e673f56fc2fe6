"""The member registry in PostgreSQL and its in-memory routing view (reloaded on every change)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bus.openapi import RestOperation, mapping_operations, parse_openapi
from bus.soap import WsdlInfo, parse_wsdl


@dataclass(frozen=True)
class Route:
    body: str
    system: str
    service: str
    protocol: str  # rest | soap
    url: str  # base URL of the service at the provider
    timeout: float
    mapping: dict[str, Any]
    rest_ops: dict[str, RestOperation] = field(default_factory=dict)
    wsdl: WsdlInfo | None = None
    description: str | None = field(default=None, repr=False)

    @property
    def provider(self) -> str:
        return f"{self.body}/{self.system}"

    @property
    def key(self) -> str:
        return f"{self.body}/{self.system}/{self.service}"


class RegistryError(ValueError):
    pass


def describe(protocol: str, description: str | None, mapping: dict[str, Any]
             ) -> tuple[dict[str, RestOperation], WsdlInfo | None]:
    """Parse the service's OpenAPI/WSDL (and declarative mapping overrides); raise RegistryError if invalid."""
    try:
        if protocol == "rest":
            ops = parse_openapi(description) if description else {}
            ops.update(mapping_operations(mapping))
            return ops, None
        if not description:
            if not mapping.get("namespace") or not mapping.get("operations"):
                raise RegistryError("a SOAP service needs its WSDL, or a mapping with namespace and operations")
            ops_map = {k: str(v.get("soapAction", "")) for k, v in mapping["operations"].items()}
            return {}, WsdlInfo(mapping["namespace"], ops_map)
        return {}, parse_wsdl(description)
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"cannot read the service description: {type(exc).__name__}: {exc}") from None


class Registry:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.routes: dict[tuple[str, str, str], Route] = {}
        self.rights: set[tuple[str, str, str, str, str]] = set()
        self.members: set[tuple[str, str]] = set()

    async def reload(self) -> None:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = await (await cur.execute(
                "SELECT s.body, s.system, s.code, s.protocol, s.path, s.description, s.mapping, s.timeout_ms, "
                "y.base_url FROM services s JOIN systems y ON (y.body, y.code) = (s.body, s.system)")).fetchall()
            rights = await (await cur.execute(
                "SELECT client_body, client_system, body, system, service FROM access_rights")).fetchall()
            members = await (await cur.execute("SELECT body, code FROM systems")).fetchall()
        routes: dict[tuple[str, str, str], Route] = {}
        for r in rows:
            try:
                ops, wsdl = describe(r["protocol"], r["description"], r["mapping"])
            except RegistryError:
                ops, wsdl = {}, None
            url = (r["base_url"] or "").rstrip("/") + ("/" + r["path"].strip("/") if r["path"] else "")
            routes[(r["body"], r["system"], r["code"])] = Route(
                r["body"], r["system"], r["code"], r["protocol"], url, r["timeout_ms"] / 1000, r["mapping"], ops, wsdl,
                r["description"])
        self.routes = routes
        self.rights = {tuple(r.values()) for r in rights}  # type: ignore[misc]
        self.members = {(m["body"], m["code"]) for m in members}

    def allowed(self, client_body: str, client_system: str, route: Route) -> bool:
        return (client_body, client_system, route.body, route.system, route.service) in self.rights

    # ---- administration (each change reloads the routing view) ----------------------------------------------

    async def _exec(self, sql: str, params: tuple[Any, ...]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            n = cur.rowcount
        await self.reload()
        return n

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return await (await cur.execute(sql, params)).fetchall()

    async def upsert_body(self, id_: str, type_: str, name_en: str, name_ar: str = "", parent: str | None = None
                          ) -> None:
        await self._exec(
            "INSERT INTO bodies (id, type, parent, name_en, name_ar) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO "
            "UPDATE SET type = EXCLUDED.type, parent = EXCLUDED.parent, name_en = EXCLUDED.name_en, "
            "name_ar = EXCLUDED.name_ar", (id_, type_, parent, name_en, name_ar))

    async def seed_bodies(self, entries: list[dict[str, Any]]) -> int:
        ordered = sorted(entries, key=lambda e: e.get("parent") is not None)  # parents first
        async with self.pool.connection() as conn:
            for e in ordered:
                await conn.execute(
                    "INSERT INTO bodies (id, type, parent, name_en, name_ar) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, parent = EXCLUDED.parent, "
                    "name_en = EXCLUDED.name_en, name_ar = EXCLUDED.name_ar",
                    (e["id"], e["type"], e.get("parent"), e["en"], e.get("ar", "")))
        await self.reload()
        return len(ordered)

    async def list_bodies(self) -> list[dict[str, Any]]:
        return await self._query("SELECT id, type, parent, name_en, name_ar FROM bodies ORDER BY id")

    async def upsert_system(self, body: str, code: str, base_url: str | None, description: str = "") -> None:
        await self._exec(
            "INSERT INTO systems (body, code, base_url, description) VALUES (%s, %s, %s, %s) ON CONFLICT (body, code) "
            "DO UPDATE SET base_url = EXCLUDED.base_url, description = EXCLUDED.description",
            (body, code, base_url, description))

    async def delete_system(self, body: str, code: str) -> int:
        return await self._exec("DELETE FROM systems WHERE body = %s AND code = %s", (body, code))

    async def list_systems(self, body: str | None = None) -> list[dict[str, Any]]:
        if body:
            return await self._query("SELECT body, code, base_url, description FROM systems WHERE body = %s "
                                     "ORDER BY code", (body,))
        return await self._query("SELECT body, code, base_url, description FROM systems ORDER BY body, code")

    async def upsert_service(self, body: str, system: str, code: str, protocol: str, path: str = "",
                             description: str | None = None, mapping: dict[str, Any] | None = None,
                             timeout_ms: int = 10_000) -> dict[str, Any]:
        mapping = mapping or {}
        ops, wsdl = describe(protocol, description, mapping)
        await self._exec(
            "INSERT INTO services (body, system, code, protocol, path, description, mapping, timeout_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (body, system, code) DO UPDATE SET "
            "protocol = EXCLUDED.protocol, path = EXCLUDED.path, description = EXCLUDED.description, "
            "mapping = EXCLUDED.mapping, timeout_ms = EXCLUDED.timeout_ms",
            (body, system, code, protocol, path, description, Jsonb(mapping), timeout_ms))
        return {"operations": sorted(ops) if protocol == "rest" else sorted(wsdl.operations if wsdl else {})}

    async def delete_service(self, body: str, system: str, code: str) -> int:
        return await self._exec("DELETE FROM services WHERE body = %s AND system = %s AND code = %s",
                                (body, system, code))

    async def list_services(self) -> list[dict[str, Any]]:
        rows = await self._query("SELECT body, system, code, protocol, path, timeout_ms, mapping FROM services "
                                 "ORDER BY body, system, code")
        for r in rows:
            route = self.routes.get((r["body"], r["system"], r["code"]))
            r["operations"] = sorted(route.rest_ops if route and route.protocol == "rest"
                                     else (route.wsdl.operations if route and route.wsdl else {}))
        return rows

    async def grant(self, client: tuple[str, str], service: tuple[str, str, str]) -> None:
        await self._exec(
            "INSERT INTO access_rights (client_body, client_system, body, system, service) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING", (*client, *service))

    async def revoke(self, client: tuple[str, str], service: tuple[str, str, str]) -> int:
        return await self._exec(
            "DELETE FROM access_rights WHERE client_body = %s AND client_system = %s AND body = %s AND system = %s "
            "AND service = %s", (*client, *service))

    async def list_rights(self) -> list[dict[str, Any]]:
        rows = await self._query("SELECT client_body, client_system, body, system, service, granted_at "
                                 "FROM access_rights ORDER BY 1, 2, 3, 4, 5")
        return [{"client": f"{r['client_body']}/{r['client_system']}",
                 "service": f"{r['body']}/{r['system']}/{r['service']}", "granted_at": r["granted_at"].isoformat()}
                for r in rows]


def read_bodies() -> list[dict[str, Any]]:
    """The 26 bodies from the one shared bodies.yaml (govcloud_common.bodies finds it)."""
    from govcloud_common.bodies import load_bodies

    return [{"id": b.id, "type": b.type, "en": b.en, "ar": b.ar, "parent": b.parent} for b in load_bodies()]


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
