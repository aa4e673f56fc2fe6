"""SOAP 1.1/1.2 envelopes, WSDL reading, JSON <-> XML mapping, and SOAP Fault <-> problem+json.

Mapping rules (documented in components/bus/README.md): an element with children becomes an object, repeated
children become a list, a leaf becomes its text; ``xsi:nil`` becomes null. Objects become elements in the
operation's namespace, lists repeat the element, booleans are ``true``/``false``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
BUS_NS = "urn:govcloud:bus"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


class SoapError(ValueError):
    """The client sent something that is not a usable SOAP envelope."""


@dataclass(frozen=True)
class WsdlInfo:
    namespace: str
    operations: dict[str, str] = field(default_factory=dict)  # operation -> soapAction
    location: str | None = None


def parse_wsdl(text: str | bytes) -> WsdlInfo:
    root = etree.fromstring(text.encode() if isinstance(text, str) else text, parser=_PARSER)
    tns = root.get("targetNamespace") or ""
    ops: dict[str, str] = {}
    for op in root.iterfind(f"{{{WSDL_NS}}}portType/{{{WSDL_NS}}}operation"):
        ops[op.get("name")] = ""
    for op in root.iterfind(f"{{{WSDL_NS}}}binding/{{{WSDL_NS}}}operation"):
        sop = op.find(f"{{{WSDL_SOAP}}}operation")
        if sop is not None and op.get("name") in ops:
            ops[op.get("name")] = sop.get("soapAction") or ""
    addr = root.find(f".//{{{WSDL_NS}}}port/{{{WSDL_SOAP}}}address")
    if not ops:
        raise ValueError("WSDL declares no operations")
    return WsdlInfo(tns, ops, addr.get("location") if addr is not None else None)


def xml_to_json(elem: etree._Element) -> Any:
    children = [c for c in elem if isinstance(c.tag, str)]
    if not children:
        if elem.get(f"{{{XSI}}}nil") in ("true", "1"):
            return None
        return elem.text or ""
    groups: dict[str, list[Any]] = {}
    for child in children:
        groups.setdefault(etree.QName(child).localname, []).append(xml_to_json(child))
    return {k: v[0] if len(v) == 1 else v for k, v in groups.items()}


def json_to_xml(parent: etree._Element, name: str, value: Any, ns: str) -> None:
    tag = f"{{{ns}}}{name}" if ns else name
    if isinstance(value, list):
        for item in value:
            json_to_xml(parent, name, item, ns)
        return
    el = etree.SubElement(parent, tag)
    if isinstance(value, dict):
        for k, v in value.items():
            json_to_xml(el, str(k), v, ns)
    elif value is None:
        el.set(f"{{{XSI}}}nil", "true")
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    else:
        el.text = str(value)


def envelope(operation: str, ns: str, payload: Any, *, soap_ns: str = SOAP11) -> bytes:
    env = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns, "m": ns} if ns else {"soap": soap_ns})
    body = etree.SubElement(env, f"{{{soap_ns}}}Body")
    op = etree.SubElement(body, f"{{{ns}}}{operation}" if ns else operation)
    if isinstance(payload, dict):
        for k, v in payload.items():
            json_to_xml(op, str(k), v, ns)
    elif payload is not None:
        op.text = str(payload)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


@dataclass(frozen=True)
class Parsed:
    soap_ns: str
    body_child: etree._Element | None  # the operation/response element
    fault: etree._Element | None


def parse_envelope(data: bytes) -> Parsed:
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapError(f"not well-formed XML: {exc}") from None
    qn = etree.QName(root)
    if qn.localname != "Envelope" or qn.namespace not in (SOAP11, SOAP12):
        raise SoapError(f"root element is {root.tag}, not a SOAP 1.1/1.2 Envelope")
    body = root.find(f"{{{qn.namespace}}}Body")
    if body is None:
        raise SoapError("SOAP envelope has no Body")
    child = next((c for c in body if isinstance(c.tag, str)), None)
    if child is not None and etree.QName(child).localname == "Fault" and etree.QName(child).namespace == qn.namespace:
        return Parsed(qn.namespace, None, child)
    return Parsed(qn.namespace, child, None)


def fault_envelope(code: str, message: str, detail: dict[str, Any] | None = None, *, soap_ns: str = SOAP11) -> bytes:
    """``code`` is Client or Server (mapped to Sender/Receiver for SOAP 1.2)."""
    env = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns, "bus": BUS_NS})
    fault = etree.SubElement(etree.SubElement(env, f"{{{soap_ns}}}Body"), f"{{{soap_ns}}}Fault")
    if soap_ns == SOAP12:
        c = etree.SubElement(etree.SubElement(fault, f"{{{soap_ns}}}Code"), f"{{{soap_ns}}}Value")
        c.text = "soap:" + {"Client": "Sender", "Server": "Receiver"}.get(code, code)
        etree.SubElement(etree.SubElement(fault, f"{{{soap_ns}}}Reason"), f"{{{soap_ns}}}Text").text = message
        det = etree.SubElement(fault, f"{{{soap_ns}}}Detail")
    else:
        etree.SubElement(fault, "faultcode").text = f"soap:{code}"
        etree.SubElement(fault, "faultstring").text = message
        det = etree.SubElement(fault, "detail")
    if detail:
        json_to_xml(det, "problem", detail, BUS_NS)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def problem_to_fault(status: int, body: bytes, content_type: str, *, soap_ns: str = SOAP11) -> bytes:
    """A REST provider's error (problem+json or anything) as a SOAP Fault for a SOAP client."""
    problem: dict[str, Any]
    try:
        parsed = json.loads(body) if body else {}
        problem = parsed if isinstance(parsed, dict) else {"detail": parsed}
    except ValueError:
        problem = {"detail": body.decode("utf-8", "replace")[:2000]}
    problem.setdefault("status", status)
    problem.setdefault("title", f"HTTP {status}")
    message = str(problem.get("title"))
    if problem.get("detail"):
        message += f": {problem['detail']}"
    return fault_envelope("Client" if status < 500 else "Server", message, problem, soap_ns=soap_ns)


def fault_to_problem(fault: etree._Element, soap_ns: str, status_map: dict[str, int] | None = None
                     ) -> dict[str, Any]:
    """A SOAP provider's Fault as RFC 9457 problem details for a REST client."""
    if soap_ns == SOAP12:
        code = fault.findtext(f"{{{soap_ns}}}Code/{{{soap_ns}}}Value") or ""
        message = fault.findtext(f"{{{soap_ns}}}Reason/{{{soap_ns}}}Text") or ""
        detail_el = fault.find(f"{{{soap_ns}}}Detail")
    else:
        code = fault.findtext("faultcode") or ""
        message = fault.findtext("faultstring") or ""
        detail_el = fault.find("detail")
    local = code.split(":")[-1]
    status = 400 if local in ("Client", "Sender") else 502
    detail = xml_to_json(detail_el) if detail_el is not None and len(detail_el) else None
    hints = _flatten(detail)
    if "httpStatus" in hints and str(hints["httpStatus"]).isdigit():
        status = int(hints["httpStatus"])
    for key in (hints.get("code"), *(detail.keys() if isinstance(detail, dict) else ())):
        if status_map and isinstance(key, str) and key in status_map:
            status = int(status_map[key])
    problem: dict[str, Any] = {"type": "urn:govcloud:bus:soap-fault", "title": message or local, "status": status,
                               "detail": message, "faultcode": code}
    if detail is not None:
        problem["faultDetail"] = detail
    return problem


def _flatten(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict):
                out.update(_flatten(v))
            else:
                out[k] = v
    return out


def generate_wsdl(namespace: str, operations: list[str], location: str, name: str) -> bytes:
    """A document/literal SOAP 1.1 WSDL for a REST service's operations (as the bus converts them): input
    element ``<op>`` and output ``<op>Response``, each a sequence of any elements (the JSON fields)."""
    xsd = "http://www.w3.org/2001/XMLSchema"
    nsmap = {None: WSDL_NS, "soap": WSDL_SOAP, "xsd": xsd, "tns": namespace}
    root = etree.Element(f"{{{WSDL_NS}}}definitions", nsmap=nsmap, targetNamespace=namespace, name=name)
    schema = etree.SubElement(etree.SubElement(root, f"{{{WSDL_NS}}}types"), f"{{{xsd}}}schema",
                              targetNamespace=namespace, elementFormDefault="qualified")
    for op in operations:
        for element in (op, f"{op}Response"):
            el = etree.SubElement(schema, f"{{{xsd}}}element", name=element)
            seq = etree.SubElement(etree.SubElement(el, f"{{{xsd}}}complexType"), f"{{{xsd}}}sequence")
            etree.SubElement(seq, f"{{{xsd}}}any", minOccurs="0", maxOccurs="unbounded", processContents="lax")
    for op in operations:
        for suffix, element in (("In", op), ("Out", f"{op}Response")):
            msg = etree.SubElement(root, f"{{{WSDL_NS}}}message", name=f"{op}{suffix}")
            etree.SubElement(msg, f"{{{WSDL_NS}}}part", name="parameters", element=f"tns:{element}")
    port_type = etree.SubElement(root, f"{{{WSDL_NS}}}portType", name=f"{name}Port")
    for op in operations:
        o = etree.SubElement(port_type, f"{{{WSDL_NS}}}operation", name=op)
        etree.SubElement(o, f"{{{WSDL_NS}}}input", message=f"tns:{op}In")
        etree.SubElement(o, f"{{{WSDL_NS}}}output", message=f"tns:{op}Out")
    binding = etree.SubElement(root, f"{{{WSDL_NS}}}binding", name=f"{name}Binding", type=f"tns:{name}Port")
    etree.SubElement(binding, f"{{{WSDL_SOAP}}}binding", style="document",
                     transport="http://schemas.xmlsoap.org/soap/http")
    for op in operations:
        o = etree.SubElement(binding, f"{{{WSDL_NS}}}operation", name=op)
        etree.SubElement(o, f"{{{WSDL_SOAP}}}operation", soapAction=op)
        for io in ("input", "output"):
            etree.SubElement(etree.SubElement(o, f"{{{WSDL_NS}}}{io}"), f"{{{WSDL_SOAP}}}body", use="literal")
    service = etree.SubElement(root, f"{{{WSDL_NS}}}service", name=name)
    port = etree.SubElement(service, f"{{{WSDL_NS}}}port", name=f"{name}Port", binding=f"tns:{name}Binding")
    etree.SubElement(port, f"{{{WSDL_SOAP}}}address", location=location)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


def relocate_wsdl(text: str, location: str) -> bytes:
    """The provider's WSDL with every soap:address pointing at the bus instead of the provider."""
    root = etree.fromstring(text.encode(), parser=_PARSER)
    for addr in root.iter(f"{{{WSDL_SOAP}}}address"):
        addr.set("location", location)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")
