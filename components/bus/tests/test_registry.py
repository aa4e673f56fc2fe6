"""The member registry and its admin API: the 26 bodies, systems, services (OpenAPI/WSDL read on
registration), access rights granted and revoked, the admin token, readiness and metrics."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.asyncio
PERSON = "/r1/cra/population/persons/persons/01010000001"


async def test_the_26_bodies_are_seeded_from_the_shared_file(harness) -> None:
    bodies = (await harness.admin.get("/admin/bodies")).json()
    assert len(bodies) == 26
    cra = next(b for b in bodies if b["id"] == "cra")
    assert cra["parent"] == "moi" and cra["name_en"] == "Civil Registry Directorate"
    assert (await harness.admin.post("/admin/bodies/seed")).json() == {"bodies": 26}  # idempotent


async def test_services_list_their_operations_from_openapi_and_wsdl(harness) -> None:
    listed = (await harness.admin.get("/admin/services")).json()
    services = {f"{s['body']}/{s['system']}/{s['code']}": s for s in listed}
    assert services["cra/population/persons"]["operations"] == ["findPersons", "getPerson"]
    assert services["mola/landregistry/parcels"]["operations"] == ["GetParcel", "RegisterTransfer"]
    assert services["mola/landregistry/parcels"]["protocol"] == "soap"


async def test_invalid_registrations_are_refused_with_reasons(harness) -> None:
    r = await harness.admin.put("/admin/services/mola/landregistry/broken", json={
        "protocol": "soap", "description": "<definitions/>"})
    assert r.status_code == 422 and "cannot read the service description" in r.text
    r = await harness.admin.put("/admin/services/nosuch/system/svc", json={"protocol": "rest"})
    assert r.status_code == 422 and "foreign key" in r.text.lower()
    r = await harness.admin.post("/admin/rights", json={"client": "moi/portal", "service": "cra/population/nope"})
    assert r.status_code == 422
    r = await harness.admin.put("/admin/systems/nobody/x", json={"base_url": "http://x"})
    assert r.status_code == 422


async def test_access_rights_granted_and_revoked_take_effect_at_once(harness) -> None:
    rights = (await harness.admin.get("/admin/rights")).json()
    assert {r["service"] for r in rights if r["client"] == "moi/portal"} == {
        "cra/population/persons", "mola/landregistry/parcels", "mof/inbox/notices"}
    async with harness.client("clinic") as c:
        assert (await c.get(PERSON)).status_code == 403
        r = await harness.admin.post("/admin/rights", json={"client": "moh/clinic",
                                                             "service": "cra/population/persons"})
        assert r.status_code == 204
        assert (await c.get(PERSON)).status_code == 200
        r = await harness.admin.request("DELETE", "/admin/rights", json={"client": "moh/clinic",
                                                                          "service": "cra/population/persons"})
        assert r.status_code == 204
        assert (await c.get(PERSON)).status_code == 403
    r = await harness.admin.request("DELETE", "/admin/rights", json={"client": "moh/clinic",
                                                                      "service": "cra/population/persons"})
    assert r.status_code == 404


async def test_removing_a_service_unroutes_it(harness) -> None:
    assert (await harness.admin.delete("/admin/services/cra/population/persons")).status_code == 204
    async with harness.client("portal") as c:
        r = await c.get(PERSON)
    assert r.status_code == 404 and r.json()["type"] == "urn:govcloud:bus:unknown-service"
    assert (await harness.admin.delete("/admin/services/cra/population/persons")).status_code == 404


async def test_bad_address_is_explained(harness) -> None:
    async with harness.client("portal") as c:
        r = await c.get("/something/else")
    assert r.status_code == 404 and "/r1/{body}/{system}/{service}" in r.json()["detail"]


async def test_admin_api_needs_the_token(harness) -> None:
    async with httpx.AsyncClient(base_url=str(harness.admin.base_url)) as anon:
        assert (await anon.get("/admin/bodies")).status_code == 401
        assert (await anon.get("/admin/bodies", headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (await anon.get("/healthz")).status_code == 200


async def test_readiness_and_metrics(harness) -> None:
    ready = await harness.admin.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == ["ca", "certificate", "database", "nats"]
    async with harness.client("portal") as c:
        assert (await c.get(PERSON)).status_code == 200
    text = (await harness.admin.get("/metrics")).text
    assert 'bus_requests_total{service="cra/population/persons",status="200"}' in text
    assert "bus_request_seconds_bucket" in text
    harness.bus.cfg.tls_cert = "/nonexistent/bus.crt"
    not_ready = await harness.admin.get("/readyz")
    assert not_ready.status_code == 503
    assert "own certificate /nonexistent/bus.crt missing" in not_ready.json()["reasons"]["certificate"]


async def test_changes_made_by_another_replica_apply_after_a_refresh(harness, pg_dsn: str) -> None:
    import psycopg

    async with harness.client("portal") as c:
        assert (await c.get(PERSON)).status_code == 200
        with psycopg.connect(pg_dsn) as conn:  # another replica revokes the right in the shared database
            conn.execute("DELETE FROM access_rights WHERE client_system = 'portal' AND service = 'persons'")
        await harness.bus.registry.reload()  # what the periodic refresh does
        assert (await c.get(PERSON)).status_code == 403
