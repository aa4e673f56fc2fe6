"""The catalog as CPSV-AP 3.2 JSON-LD and as CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from portal.catalog import CATEGORIES, LIFE_EVENTS

CONTEXT = {
    "cpsv": "http://purl.org/vocab/cpsv#",
    "cv": "http://data.europa.eu/m8g/",
    "dct": "http://purl.org/dc/terms/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "org": "http://www.w3.org/ns/org#",
    "adms": "http://www.w3.org/ns/adms#",
    "eli": "http://data.europa.eu/eli/ontology#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "gov": "urn:govcloud:portal#",  # what CPSV-AP has no property for: fee legal basis, payment, steps, hours
}
SYRIA = "http://publications.europa.eu/resource/authority/country/SYR"
SYP = "http://publications.europa.eu/resource/authority/currency/SYP"
CHANNEL_LABELS = {"online": ("Online", "عبر الإنترنت"), "office": ("Service centre", "مركز خدمة"),
                  "phone": ("Telephone", "الهاتف")}
STATUS_LABELS = {"draft": ("Draft", "مسودة"), "published": ("Published", "منشورة"),
                 "withdrawn": ("Withdrawn", "مسحوبة")}
FORM_LABELS = {"original": ("original", "أصل"), "copy": ("copy", "صورة")}
PAY_LABELS = {"cash": "cash at the service centre", "bank": "bank transfer", "epayment": "electronic payment"}


def _lang(en: str, ar: str) -> list[dict[str, str]]:
    return [{"@value": en, "@language": "en"}, {"@value": ar, "@language": "ar"}]


def jsonld(bodies: Sequence[dict[str, Any]], services: Sequence[dict[str, Any]], base: str) -> dict[str, Any]:
    ids = f"{base}/id"

    def concept(scheme: str, key: str, en: str, ar: str) -> dict[str, Any]:
        return {"@id": f"{ids}/{scheme}/{key}", "@type": "skos:Concept", "skos:prefLabel": _lang(en, ar),
                "skos:inScheme": {"@id": f"{ids}/{scheme}"}}

    graph: list[dict[str, Any]] = [
        {"@id": SYRIA, "@type": "dct:Location", "skos:prefLabel": _lang("Syria", "سوريا")},
        {"@id": SYP, "@type": "skos:Concept", "skos:prefLabel": _lang("Syrian pound", "ليرة سورية")},
    ]
    graph += [concept("status", k, en, ar) for k, (en, ar) in STATUS_LABELS.items()]
    graph += [concept("channel-type", k, en, ar) for k, (en, ar) in CHANNEL_LABELS.items()]
    graph += [concept("category", k, en, ar) for k, (en, ar) in CATEGORIES.items()]
    graph += [concept("evidence-form", k, en, ar) for k, (en, ar) in FORM_LABELS.items()]
    for key, (en, ar) in LIFE_EVENTS.items():
        graph.append({"@id": f"{ids}/life-event/{key}", "@type": ["cv:LifeEvent", "cv:Event"],
                      "dct:identifier": key, "dct:title": _lang(en, ar)})
    for b in bodies:
        node: dict[str, Any] = {
            "@id": f"{ids}/body/{b['id']}", "@type": ["cv:PublicOrganisation", "org:Organization"],
            "dct:identifier": b["id"], "skos:prefLabel": _lang(b["name_en"], b["name_ar"]),
            "dct:spatial": {"@id": SYRIA}, "dct:type": b["type"],
        }
        if b["parent_id"]:
            node["org:subOrganizationOf"] = {"@id": f"{ids}/body/{b['parent_id']}"}
        graph.append(node)
    seen_laws: set[str] = set()
    for s in services:
        sid, owner = f"{ids}/service/{s['id']}", {"@id": f"{ids}/body/{s['body_id']}"}
        for law in s["legal_resources"]:
            if law["id"] not in seen_laws:
                seen_laws.add(law["id"])
                graph.append({"@id": f"{ids}/legal/{law['id']}", "@type": "eli:LegalResource",
                              "dct:identifier": law["id"], "dct:title": _lang(law["en"], law["ar"])})
        requirements = []
        for r in s["requirements"]:
            en_form, ar_form = FORM_LABELS[r["form"]]
            evidence: dict[str, Any] = {
                "@id": f"{sid}/evidence/{r['id']}", "@type": "cv:Evidence", "dct:identifier": f"{r['id']}-e",
                "dct:title": _lang(r["en"], r["ar"]),
                "dct:description": _lang(f"{r['en']} ({en_form})", f"{r['ar']} ({ar_form})"),
                "dct:type": {"@id": f"{ids}/evidence-form/{r['form']}"},
            }
            if r["issuer"]:
                evidence["dct:publisher"] = {"@id": f"{ids}/body/{r['issuer']}"}
            requirements.append({"@id": f"{sid}/requirement/{r['id']}", "@type": "cv:Requirement",
                                 "dct:identifier": r["id"], "dct:title": _lang(r["en"], r["ar"]),
                                 "gov:documentKey": r.get("key", ""),
                                 "cv:hasSupportingEvidence": evidence})
        pay = ", ".join(PAY_LABELS[p] for p in s["payment_channels"]) or "no payment"
        cost = {
            "@id": f"{sid}/cost", "@type": "cv:Cost", "dct:identifier": f"{s['id']}-fee",
            "cv:hasValue": {"@value": f"{float(s['fee_syp'])!r}", "@type": "xsd:double"},
            "cv:currency": {"@id": SYP}, "cv:isDefinedBy": owner,
            "dct:description": _lang(f"{s['fee_legal_basis_en'] or 'No fee'}; payment: {pay}",
                                     f"{s['fee_legal_basis_ar'] or 'بلا رسم'}"),
            "gov:paymentChannel": list(s["payment_channels"]),
        }
        if s["fee_legal_basis_en"] or s["fee_legal_basis_ar"]:
            cost["gov:legalBasis"] = _lang(s["fee_legal_basis_en"], s["fee_legal_basis_ar"])
        channels = [{"@id": f"{sid}/channel/{c}", "@type": "cv:Channel", "dct:identifier": f"{s['id']}-{c}",
                     "dct:type": {"@id": f"{ids}/channel-type/{c}"}, "cv:ownedBy": owner} for c in s["channels"]]
        contact = s["contact"]
        graph.append({
            "@id": sid, "@type": "cpsv:PublicService", "dct:identifier": s["id"],
            "dct:title": _lang(s["name_en"], s["name_ar"]),
            "dct:description": _lang(s["description_en"], s["description_ar"]),
            "adms:status": {"@id": f"{ids}/status/{s['status']}"},
            "cv:hasCompetentAuthority": owner,
            "cv:processingTime": {"@value": s["processing_time"], "@type": "xsd:duration"},
            "cv:thematicArea": {"@id": f"{ids}/category/{s['category']}"},
            "cv:isGroupedBy": [{"@id": f"{ids}/life-event/{e}"} for e in s["life_events"]],
            "cv:holdsRequirement": requirements,
            "cv:hasCost": cost,
            "cv:hasChannel": channels,
            "cv:hasLegalResource": [{"@id": f"{ids}/legal/{law['id']}"} for law in s["legal_resources"]],
            "cv:contactPoint": {"@id": f"{sid}/contact", "@type": "cv:ContactPoint",
                                "cv:telephone": contact.get("phone", ""), "cv:email": contact.get("email", ""),
                                "gov:hours": _lang(contact.get("hours_en", ""), contact.get("hours_ar", ""))},
            "gov:step": [{"@id": f"{sid}/step/{n}", "@type": "gov:Step", "gov:order": n,
                          "dct:title": _lang(step["en"], step["ar"])} for n, step in enumerate(s["steps"], 1)],
            "dct:spatial": {"@id": SYRIA},
        })
    return {"@context": CONTEXT, "@graph": graph}


CSV_COLUMNS = ("id", "body_id", "status", "name_en", "name_ar", "description_en", "description_ar", "category",
               "life_events", "channels", "fee_syp", "fee_legal_basis_en", "fee_legal_basis_ar", "payment_channels",
               "processing_time", "processing_hours", "requirements", "steps", "contact", "legal_resources")
_LISTS = {"life_events", "channels", "payment_channels"}
_JSON = {"requirements", "steps", "contact", "legal_resources"}


def csv_text(services: Sequence[dict[str, Any]]) -> str:
    """One row per service; lists joined by ``|``, nested structures as JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in services:
        writer.writerow([
            "|".join(s[c]) if c in _LISTS else json.dumps(s[c], ensure_ascii=False, sort_keys=True) if c in _JSON
            else s[c] for c in CSV_COLUMNS
        ])
    return out.getvalue()
