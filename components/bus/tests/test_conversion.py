"""Protocol conversion through the bus: REST client -> SOAP provider and SOAP client -> REST provider, faults
both ways, plus same-protocol pass-through."""

from __future__ import annotations

import pytest
from lxml import etree

from conftest import soap_request

pytestmark = pytest.mark.asyncio
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
CRA_NS = "urn:govcloud:cra:population"
LAND_NS = "urn:govcloud:mola:landregistry"


def body_child(content: bytes) -> etree._Element:
    root = etree.fromstring(content)
    return root.find(f"{{{SOAP}}}Body")[0]


async def test_rest_client_calls_soap_provider(harness) -> None:
    async with harness.client("portal") as c:
        get = await c.get("/r1/mola/landregistry/parcels/GetParcel", params={"parcelId": "DMS-1001"})
        post = await c.post("/r1/mola/landregistry/parcels/RegisterTransfer",
                            json={"parcelId": "DMS-1001", "newOwner": "01010000002"})
    assert get.status_code == 200, get.text
    assert get.headers["content-type"] == "application/json"
    assert get.json() == {"parcelId": "DMS-1001", "district": "Damascus/Mezzeh", "areaM2": "420",
                          "owner": "01010000001", "encumbered": "false"}
    assert post.status_code == 200 and post.json()["status"] == "registered"


async def test_soap_fault_becomes_problem_json(harness) -> None:
    async with harness.client("portal") as c:
        missing = await c.get("/r1/mola/landregistry/parcels/GetParcel", params={"parcelId": "NOPE"})
        conflict = await c.post("/r1/mola/landregistry/parcels/RegisterTransfer",
                                json={"parcelId": "ALP-2002", "newOwner": "01010000001"})
        unknown = await c.get("/r1/mola/landregistry/parcels/DropTables")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    p = missing.json()
    assert p["type"] == "urn:govcloud:bus:soap-fault" and p["faultcode"] == "soap:Client"
    assert "parcel 'NOPE' not found" in p["detail"]
    assert p["faultDetail"]["LandRegistryError"]["code"] == "ParcelNotFound"
    assert conflict.status_code == 409 and conflict.json()["title"] == "parcel is encumbered"
    assert unknown.status_code == 404 and unknown.json()["type"] == "urn:govcloud:bus:unknown-operation"
    assert "GetParcel, RegisterTransfer" in unknown.json()["detail"]


async def test_declarative_fault_mapping_overrides_status(harness) -> None:
    wsdl = (await harness.admin.get(f"{harness.bodysystems.url}/mola/landregistry/soap?wsdl")).text
    r = await harness.admin.put("/admin/services/mola/landregistry/parcels", json={
        "protocol": "soap", "path": "soap", "description": wsdl, "mapping": {"faults": {"Encumbered": 423}}})
    assert r.status_code == 200, r.text
    async with harness.client("portal") as c:
        conflict = await c.post("/r1/mola/landregistry/parcels/RegisterTransfer",
                                json={"parcelId": "ALP-2002", "newOwner": "01010000001"})
    assert conflict.status_code == 423


async def test_soap_client_calls_rest_provider(harness) -> None:
    async with harness.client("portal") as c:
        r = await c.post("/r1/cra/population/persons", content=soap_request("getPerson", CRA_NS,
                                                                             nationalId="01010000002"),
                         headers={"content-type": "text/xml; charset=utf-8", "soapaction": '"getPerson"'})
        q = await c.post("/r1/cra/population/persons", content=soap_request("findPersons", CRA_NS,
                                                                             familyName="haddad"),
                         headers={"content-type": "text/xml"})
    assert r.status_code == 200, r.text
    resp = body_child(r.content)
    assert etree.QName(resp).localname == "getPersonResponse" and etree.QName(resp).namespace == CRA_NS
    assert resp.findtext(f"{{{CRA_NS}}}givenName") == "Lina"
    found = body_child(q.content)
    assert [p.findtext(f"{{{CRA_NS}}}nationalId") for p in found.findall(f"{{{CRA_NS}}}persons")] == ["01010000001"]


async def test_problem_json_becomes_soap_fault(harness) -> None:
    async with harness.client("portal") as c:
        r = await c.post("/r1/cra/population/persons", content=soap_request("getPerson", CRA_NS, nationalId="0"),
                         headers={"content-type": "text/xml"})
        bad = await c.post("/r1/cra/population/persons", content=b"<not-soap/>", headers={"content-type": "text/xml"})
        noop = await c.post("/r1/cra/population/persons", content=soap_request("deleteEveryone", CRA_NS),
                            headers={"content-type": "text/xml"})
    assert r.status_code == 500
    fault = body_child(r.content)
    assert etree.QName(fault).localname == "Fault"
    assert fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext("faultstring") == "person not found: no person with national id 0"
    problem = fault.find("detail/{urn:govcloud:bus}problem")
    assert problem.findtext("{urn:govcloud:bus}status") == "404"
    assert problem.findtext("{urn:govcloud:bus}type") == "urn:govcloud:cra:person-not-found"
    assert bad.status_code == 500 and b"malformed-soap" in bad.content
    assert noop.status_code == 500 and b"unknown-operation" in noop.content


async def test_provider_outage_becomes_server_fault_for_soap_clients(harness) -> None:
    await harness.admin.put(f"{harness.bodysystems.url}/_sim/faults", json={"system": "cra/population",
                                                                              "status": 503})
    async with harness.client("portal") as c:
        r = await c.post("/r1/cra/population/persons", content=soap_request("getPerson", CRA_NS,
                                                                             nationalId="01010000001"),
                         headers={"content-type": "text/xml"})
    assert r.status_code == 500
    assert body_child(r.content).findtext("faultcode") == "soap:Server"


async def test_same_protocol_passes_through(harness) -> None:
    async with harness.client("portal") as c:
        soap = await c.post("/r1/mola/landregistry/parcels",
                            content=soap_request("GetParcel", LAND_NS, parcelId="ALP-2002"),
                            headers={"content-type": "text/xml", "soapaction": f'"{LAND_NS}#GetParcel"'})
        rest = await c.get("/r1/cra/population/persons/persons", params={"familyName": "Khoury"})
    assert soap.status_code == 200
    assert body_child(soap.content).findtext(f"{{{LAND_NS}}}owner") == "01010000002"
    assert rest.status_code == 200 and rest.json()["persons"][0]["givenName"] == "Lina"


async def test_soap12_client_gets_soap12_back(harness) -> None:
    soap12 = "http://www.w3.org/2003/05/soap-envelope"
    envelope = (f'<e:Envelope xmlns:e="{soap12}" xmlns:m="{CRA_NS}"><e:Body><m:getPerson>'
                "<m:nationalId>0</m:nationalId></m:getPerson></e:Body></e:Envelope>").encode()
    async with harness.client("portal") as c:
        r = await c.post("/r1/cra/population/persons", content=envelope,
                         headers={"content-type": "application/soap+xml; charset=utf-8"})
    fault = etree.fromstring(r.content).find(f"{{{soap12}}}Body/{{{soap12}}}Fault")
    assert fault.findtext(f"{{{soap12}}}Code/{{{soap12}}}Value") == "soap:Sender"
    assert "person not found" in fault.findtext(f"{{{soap12}}}Reason/{{{soap12}}}Text")


async def test_oversized_message_is_refused(harness) -> None:
    harness.bus.router.max_body = 1024
    async with harness.client("portal") as c:
        r = await c.post("/r1/mof/inbox/notices/payment-notices", content=b"x" * 5000,
                         headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["type"] == "urn:govcloud:bus:message-too-large"


async def test_wsdl_through_the_bus_for_soap_clients(harness) -> None:
    from bus.soap import WSDL_SOAP, parse_wsdl

    async with harness.client("portal") as c:
        rest = await c.get("/r1/cra/population/persons?wsdl")
        soap = await c.get("/r1/mola/landregistry/parcels?wsdl")
    async with harness.client("clinic") as c:
        denied = await c.get("/r1/cra/population/persons?wsdl")
    generated = parse_wsdl(rest.content)
    assert generated.namespace == CRA_NS and generated.operations == {"findPersons": "findPersons",
                                                                      "getPerson": "getPerson"}
    assert generated.location == f"{harness.mtls_url}/r1/cra/population/persons"
    relocated = etree.fromstring(soap.content)
    assert [a.get("location") for a in relocated.iter(f"{{{WSDL_SOAP}}}address")] == [
        f"{harness.mtls_url}/r1/mola/landregistry/parcels"]
    assert parse_wsdl(soap.content).operations["GetParcel"] == f"{LAND_NS}#GetParcel"
    assert denied.status_code == 403
