"""The simulator's HTTP surface.

* ``/cra/population`` — Civil Registry Directorate, REST/JSON with OpenAPI (``/cra/population/openapi.json``).
* ``/{body}/inbox`` — REST/JSON inbox every body has: receives payment notices (de-duplicated by the bus's
  ``X-Bus-Message-Id``) and lists them.
* ``/mola/landregistry/soap`` — legacy land registry, SOAP 1.1 document/literal (``?wsdl`` gives the WSDL).
* ``/_sim/faults`` — test control: make a system fail (HTTP status) or answer slowly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from govcloud_common.service import create_app
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bodysystems.data import PARCELS, PERSONS

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
LAND_NS = "urn:govcloud:mola:landregistry"
BODIES = {
    "moct", "moi", "mof", "moj", "moh", "moe", "mohe", "moet", "mointr", "moind", "moag", "mowr", "moel", "mooil",
    "motr", "mopw", "mola", "mosal", "motour", "mocult", "moinf", "moaw", "mofa", "cra", "tax", "nans",
}


class Fault(BaseModel):
    system: str = Field(description="path prefix of the system, e.g. 'cra/population'")
    status: int | None = Field(None, description="answer every request with this HTTP status (None: no failure)")
    delay_ms: int = 0


class PaymentNotice(BaseModel):
    """A payment notice: the bus samples' shape (noticeId, nationalId, reference) or the payment component's
    outcome notification (event, order_id, status, amount, currency, service_id | bill_reference, receipt_id)."""

    model_config = ConfigDict(extra="allow")
    amount: str | int | float
    currency: str = "SYP"
    noticeId: str | None = None
    nationalId: str | None = None
    reference: str | None = None
    event: str | None = None
    order_id: str | None = None
    status: str | None = None
    receipt_id: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> PaymentNotice:
        if not self.noticeId and not self.order_id:
            raise ValueError("a payment notice needs noticeId or order_id")
        return self


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> JSONResponse:
    return JSONResponse({"type": type_, "title": title, "status": status, "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def population_app() -> FastAPI:
    api = FastAPI(title="Civil Registry - population register", version="1.0", docs_url=None, redoc_url=None)

    @api.get("/persons/{nationalId}", operation_id="getPerson")
    async def get_person(nationalId: str) -> Any:
        person = PERSONS.get(nationalId)
        if person is None:
            return problem(404, "person not found", f"no person with national id {nationalId}",
                           "urn:govcloud:cra:person-not-found")
        return person

    @api.get("/persons", operation_id="findPersons")
    async def find_persons(familyName: str) -> dict[str, Any]:
        return {"persons": [p for p in PERSONS.values() if p["familyName"].lower() == familyName.lower()]}

    return api


def inbox_app(state: dict[str, Any]) -> FastAPI:
    api = FastAPI(title="Body inbox", version="1.0", docs_url=None, redoc_url=None)

    @api.post("/{body}/inbox/payment-notices", operation_id="receivePaymentNotice", status_code=201)
    async def receive(body: str, notice: PaymentNotice, request: Request) -> Any:
        if body not in BODIES:
            return problem(404, "unknown body", f"{body!r} is not one of the 26 bodies")
        key = (request.headers.get("x-bus-message-id") or notice.noticeId
               or f"{notice.order_id}:{notice.event or notice.status}")
        state["deliveries"][body] = state["deliveries"].get(body, 0) + 1
        inbox: dict[str, dict[str, Any]] = state["notices"].setdefault(body, {})
        if key in inbox:  # at-least-once upstream: the same message again is acknowledged, not re-applied
            return JSONResponse({"status": "duplicate", "receipt": inbox[key]["receipt"]}, status_code=200)
        receipt = f"{body.upper()}-{next(state['receipts']):06d}"
        inbox[key] = {"receipt": receipt, "notice": notice.model_dump(exclude_none=True), "messageId": key,
                      "client": request.headers.get("x-bus-client"),
                      "signed": "x-payment-signature" in request.headers}
        return {"status": "accepted", "receipt": receipt}

    @api.get("/{body}/inbox/payment-notices", operation_id="listPaymentNotices")
    async def list_notices(body: str) -> dict[str, Any]:
        inbox = state["notices"].get(body, {})
        return {"notices": list(inbox.values()), "deliveries": state["deliveries"].get(body, 0)}

    return api


def _fault(code: str, message: str, detail: dict[str, str]) -> Response:
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "lr": LAND_NS})
    fault = etree.SubElement(etree.SubElement(env, f"{{{SOAP_NS}}}Body"), f"{{{SOAP_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    det = etree.SubElement(fault, "detail")
    err = etree.SubElement(det, f"{{{LAND_NS}}}LandRegistryError")
    for k, v in detail.items():
        etree.SubElement(err, f"{{{LAND_NS}}}{k}").text = v
    return Response(etree.tostring(env, xml_declaration=True, encoding="utf-8"), status_code=500,
                    media_type="text/xml; charset=utf-8")


def _reply(operation: str, fields: dict[str, str]) -> Response:
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "lr": LAND_NS})
    resp = etree.SubElement(etree.SubElement(env, f"{{{SOAP_NS}}}Body"), f"{{{LAND_NS}}}{operation}Response")
    for k, v in fields.items():
        etree.SubElement(resp, f"{{{LAND_NS}}}{k}").text = v
    return Response(etree.tostring(env, xml_declaration=True, encoding="utf-8"), media_type="text/xml; charset=utf-8")


WSDL = f"""<?xml version="1.0" encoding="utf-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{LAND_NS}" targetNamespace="{LAND_NS}" name="LandRegistry">
  <types>
    <xsd:schema targetNamespace="{LAND_NS}" elementFormDefault="qualified">
      <xsd:element name="GetParcel"><xsd:complexType><xsd:sequence>
        <xsd:element name="parcelId" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GetParcelResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="parcelId" type="xsd:string"/><xsd:element name="district" type="xsd:string"/>
        <xsd:element name="areaM2" type="xsd:string"/><xsd:element name="owner" type="xsd:string"/>
        <xsd:element name="encumbered" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="RegisterTransfer"><xsd:complexType><xsd:sequence>
        <xsd:element name="parcelId" type="xsd:string"/><xsd:element name="newOwner" type="xsd:string"/>
        </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="RegisterTransferResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="transferId" type="xsd:string"/><xsd:element name="status" type="xsd:string"/>
        </xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </types>
  <message name="GetParcelIn"><part name="parameters" element="tns:GetParcel"/></message>
  <message name="GetParcelOut"><part name="parameters" element="tns:GetParcelResponse"/></message>
  <message name="RegisterTransferIn"><part name="parameters" element="tns:RegisterTransfer"/></message>
  <message name="RegisterTransferOut"><part name="parameters" element="tns:RegisterTransferResponse"/></message>
  <portType name="LandRegistryPort">
    <operation name="GetParcel"><input message="tns:GetParcelIn"/><output message="tns:GetParcelOut"/></operation>
    <operation name="RegisterTransfer"><input message="tns:RegisterTransferIn"/>
      <output message="tns:RegisterTransferOut"/></operation>
  </portType>
  <binding name="LandRegistryBinding" type="tns:LandRegistryPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="GetParcel"><soap:operation soapAction="{LAND_NS}#GetParcel"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
    <operation name="RegisterTransfer"><soap:operation soapAction="{LAND_NS}#RegisterTransfer"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
  <service name="LandRegistryService">
    <port name="LandRegistryPort" binding="tns:LandRegistryBinding">
      <soap:address location="http://bodysystems/mola/landregistry/soap"/></port>
  </service>
</definitions>
"""


def build_app() -> FastAPI:
    app = create_app("bodysystems")
    state: dict[str, Any] = {"faults": {}, "notices": {}, "deliveries": {}, "receipts": itertools.count(1),
                             "transfers": itertools.count(1)}
    app.state.sim = state

    @app.middleware("http")
    async def _faults(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path.lstrip("/")
        for prefix, fault in state["faults"].items():
            if path.startswith(prefix + "/") or path == prefix:
                if fault.delay_ms:
                    await asyncio.sleep(fault.delay_ms / 1000)  # simulated slowness, not synchronisation
                if fault.status:
                    return problem(fault.status, "simulated outage", f"{prefix} is down (simulator)")
        return await call_next(request)

    @app.put("/_sim/faults", include_in_schema=False)
    async def set_fault(fault: Fault) -> dict[str, Any]:
        if fault.status is None and not fault.delay_ms:
            state["faults"].pop(fault.system.strip("/"), None)
        else:
            state["faults"][fault.system.strip("/")] = fault
        return {"faults": sorted(state["faults"])}

    @app.get("/mola/landregistry/soap", include_in_schema=False)
    async def wsdl(request: Request) -> Response:
        if "wsdl" not in request.query_params:
            raise HTTPException(405, "POST a SOAP envelope, or GET ?wsdl")
        return Response(WSDL, media_type="text/xml; charset=utf-8")

    @app.post("/mola/landregistry/soap", include_in_schema=False)
    async def land_registry(request: Request) -> Response:
        try:
            root = etree.fromstring(await request.body(), parser=etree.XMLParser(resolve_entities=False,
                                                                                 no_network=True))
            body = root.find(f"{{{SOAP_NS}}}Body")
            op = body[0] if body is not None and len(body) else None
        except etree.XMLSyntaxError as exc:
            return _fault("Client", f"malformed XML: {exc}", {"code": "malformed"})
        if op is None:
            return _fault("Client", "empty SOAP body", {"code": "malformed"})
        name = etree.QName(op).localname
        args = {etree.QName(c).localname: (c.text or "") for c in op}
        if name == "GetParcel":
            parcel = PARCELS.get(args.get("parcelId", ""))
            if parcel is None:
                return _fault("Client", f"parcel {args.get('parcelId')!r} not found",
                              {"code": "ParcelNotFound", "httpStatus": "404"})
            return _reply("GetParcel", parcel)
        if name == "RegisterTransfer":
            parcel = PARCELS.get(args.get("parcelId", ""))
            if parcel is None:
                return _fault("Client", f"parcel {args.get('parcelId')!r} not found",
                              {"code": "ParcelNotFound", "httpStatus": "404"})
            if parcel["encumbered"] == "true":
                return _fault("Client", "parcel is encumbered", {"code": "Encumbered", "httpStatus": "409"})
            return _reply("RegisterTransfer", {"transferId": f"TR-{next(state['transfers']):05d}",
                                               "status": "registered"})
        return _fault("Client", f"unknown operation {name!r}", {"code": "UnknownOperation"})

    app.mount("/cra/population", population_app())
    app.mount("/", inbox_app(state))
    return app
