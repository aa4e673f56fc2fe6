"""The simulated body systems: the REST civil registry (OpenAPI), the SOAP land registry (WSDL, faults),
the payment-notice inbox every body has (de-duplicated by the bus's message id) and the fault controls."""

from __future__ import annotations

import pytest
import yaml
from bodysystems.app import BODIES, LAND_NS, SOAP_NS, build_app
from fastapi.testclient import TestClient
from lxml import etree

from infra.contract import ComponentSpec


@pytest.fixture
def client() -> TestClient:
    return TestClient(build_app())


def soap(op: str, **fields: str) -> bytes:
    inner = "".join(f"<lr:{k}>{v}</lr:{k}>" for k, v in fields.items())
    return (f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:lr="{LAND_NS}"><soap:Body><lr:{op}>{inner}</lr:{op}>'
            "</soap:Body></soap:Envelope>").encode()


def test_spec_and_bodies_match_the_shared_list() -> None:
    from pathlib import Path

    from govcloud_common.bodies import load_bodies

    spec = ComponentSpec.model_validate(yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "component.yaml").read_text()))
    assert spec.ports == {"http": 18080} and spec.user == 10080
    assert {b.id for b in load_bodies()} == BODIES


def test_civil_registry_rest_and_openapi(client: TestClient) -> None:
    r = client.get("/cra/population/persons/01010000002")
    assert r.status_code == 200 and r.json()["familyName"] == "Khoury"
    missing = client.get("/cra/population/persons/999")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    ops = {op["operationId"] for path in client.get("/cra/population/openapi.json").json()["paths"].values()
           for op in path.values()}
    assert ops == {"getPerson", "findPersons"}


def test_land_registry_soap_wsdl_reply_and_faults(client: TestClient) -> None:
    wsdl = etree.fromstring(client.get("/mola/landregistry/soap?wsdl").content)
    assert wsdl.get("targetNamespace") == LAND_NS
    ok = client.post("/mola/landregistry/soap", content=soap("GetParcel", parcelId="DMS-1001"),
                     headers={"content-type": "text/xml"})
    assert ok.status_code == 200
    assert etree.fromstring(ok.content).findtext(f".//{{{LAND_NS}}}district") == "Damascus/Mezzeh"
    fault = client.post("/mola/landregistry/soap", content=soap("GetParcel", parcelId="X"))
    assert fault.status_code == 500
    root = etree.fromstring(fault.content)
    assert root.findtext(f".//{{{SOAP_NS}}}Fault/faultcode") == "soap:Client"
    assert root.findtext(f".//{{{LAND_NS}}}code") == "ParcelNotFound"
    assert client.post("/mola/landregistry/soap", content=b"<<").status_code == 500


def test_payment_notice_inbox_deduplicates_by_message_id(client: TestClient) -> None:
    notice = {"noticeId": "N-1", "nationalId": "01010000001", "amount": "2500", "reference": "PAY-1"}
    first = client.post("/tax/inbox/payment-notices", json=notice, headers={"x-bus-message-id": "m-1"})
    again = client.post("/tax/inbox/payment-notices", json=notice, headers={"x-bus-message-id": "m-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {"status": "duplicate", "receipt": first.json()["receipt"]}
    listed = client.get("/tax/inbox/payment-notices").json()
    assert len(listed["notices"]) == 1 and listed["deliveries"] == 2
    assert client.post("/nobody/inbox/payment-notices", json=notice).status_code == 404
    assert client.post("/tax/inbox/payment-notices", json={"noticeId": "x"}).status_code == 422
    assert client.post("/tax/inbox/payment-notices", json={"amount": "1"}).status_code == 422


def test_inbox_takes_the_payment_components_outcome_notification(client: TestClient) -> None:
    outcome = {"event": "order.paid", "order_id": "ord-1", "status": "paid", "amount": 2500, "currency": "SYP",
               "bill_reference": "TAX-2026-1", "switch_ref": "SW-1", "receipt_id": "R-1", "at": "2026-01-01T00:00:00Z"}
    first = client.post("/tax/inbox/payment-notices", json=outcome, headers={"x-payment-signature": "t=1,v1=ab"})
    again = client.post("/tax/inbox/payment-notices", json=outcome)
    assert first.status_code == 201 and again.json()["status"] == "duplicate"
    (stored,) = client.get("/tax/inbox/payment-notices").json()["notices"]
    assert stored["messageId"] == "ord-1:order.paid" and stored["signed"]
    assert stored["notice"]["bill_reference"] == "TAX-2026-1"


def test_fault_controls(client: TestClient) -> None:
    assert client.put("/_sim/faults", json={"system": "cra/population", "status": 503}).status_code == 200
    assert client.get("/cra/population/persons/01010000001").status_code == 503
    assert client.get("/mola/landregistry/soap?wsdl").status_code == 200  # other systems unaffected
    client.put("/_sim/faults", json={"system": "cra/population", "status": None})
    assert client.get("/cra/population/persons/01010000001").status_code == 200
