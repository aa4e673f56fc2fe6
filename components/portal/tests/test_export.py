"""Exports: CPSV-AP JSON-LD conforming to the SEMIC SHACL shapes (pySHACL), and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pyshacl import validate
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF

from .conftest import ADMIN

SHAPES = Path(os.environ.get("GOVCLOUD_STANDARDS_DIR", Path(__file__).resolve().parent / "standards"))
SHAPES_FILE = SHAPES / "cpsv-ap-3.2.0-SHACL.ttl"
CPSV = Namespace("http://purl.org/vocab/cpsv#")
CV = Namespace("http://data.europa.eu/m8g/")
DCT = Namespace("http://purl.org/dc/terms/")


@pytest.fixture(scope="module")
def shapes() -> Graph:
    assert SHAPES_FILE.is_file(), f"CPSV-AP shapes not found at {SHAPES_FILE} (set GOVCLOUD_STANDARDS_DIR)"
    return Graph().parse(SHAPES_FILE)


def export_graph(client: TestClient, **params: str) -> tuple[dict, Graph]:
    r = client.get("/api/export/catalog.jsonld", params=params, headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    return doc, Graph().parse(data=json.dumps(doc), format="json-ld")


def test_jsonld_conforms_to_cpsv_ap_shapes(reader: TestClient, shapes: Graph) -> None:
    body = "nans"  # an agency with a parent ministry; the full export is the same code over every body
    _, graph = export_graph(reader, body=body)
    services = set(graph.subjects(RDF.type, CPSV.PublicService))
    expected = reader.get("/api/services", params={"body": body, "limit": 1}).json()["total"]
    assert len(services) == expected > 0
    conforms, _, report = validate(graph, shacl_graph=shapes, inference="none", allow_warnings=False)
    assert conforms, report[:4000]


def test_jsonld_carries_the_model(reader: TestClient) -> None:
    _, graph = export_graph(reader, body="nans")
    s = next(iter(graph.subjects(RDF.type, CPSV.PublicService)))
    sid = str(graph.value(s, DCT.identifier))
    detail = reader.get(f"/api/services/{sid}").json()
    titles = {t.language: str(t) for t in graph.objects(s, DCT.title)}
    assert titles == {"en": detail["name_en"], "ar": detail["name_ar"]}
    assert graph.value(s, CV.processingTime) == Literal(detail["processing_time"], datatype=URIRef("http://www.w3.org/2001/XMLSchema#duration"))
    cost = graph.value(s, CV.hasCost)
    assert graph.value(cost, CV.hasValue).toPython() == detail["fee_syp"]
    assert graph.value(cost, CV.currency) == URIRef("http://publications.europa.eu/resource/authority/currency/SYP")
    assert len(list(graph.objects(s, CV.holdsRequirement))) == len(detail["requirements"])
    assert len(list(graph.objects(s, CV.hasChannel))) == len(detail["channels"])
    assert str(graph.value(s, CV.hasCompetentAuthority)).endswith("/id/body/nans")


def test_invalid_jsonld_is_caught(reader: TestClient, shapes: Graph) -> None:
    """The check has teeth: a service without a competent authority fails the shapes."""
    doc, _ = export_graph(reader, body="nans")
    for node in doc["@graph"]:
        if node.get("@type") == "cpsv:PublicService":
            del node["cv:hasCompetentAuthority"]
            break
    graph = Graph().parse(data=json.dumps(doc), format="json-ld")
    conforms, _, report = validate(graph, shacl_graph=shapes, inference="none")
    assert not conforms and "hasCompetentAuthority" in report


def test_full_export_counts(reader: TestClient) -> None:
    doc = reader.get("/api/export/catalog.jsonld").json()
    assert sum(1 for n in doc["@graph"] if n.get("@type") == "cpsv:PublicService") == 2894
    assert sum(1 for n in doc["@graph"] if "cv:PublicOrganisation" in n.get("@type", [])) == 26
    assert reader.get("/api/export/catalog.jsonld", params={"status": "all"}).status_code == 401


def test_csv_export(reader: TestClient) -> None:
    r = reader.get("/api/export/catalog.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2894 and {row["status"] for row in rows} == {"published"}
    first = reader.get(f"/api/services/{rows[0]['id']}").json()
    assert int(rows[0]["fee_syp"]) == first["fee_syp"] and rows[0]["name_ar"] == first["name_ar"]
    assert json.loads(rows[0]["requirements"])[0]["id"] == first["requirements"][0]["id"]
    assert rows[0]["channels"].split("|") == first["channels"]
    everything = reader.get("/api/export/catalog.csv", params={"status": "all"}, headers=ADMIN)
    assert everything.text.count("\n") == 4246 + 1
