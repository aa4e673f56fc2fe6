"""Import in the export formats: validated per record, all-or-nothing, idempotent."""

from __future__ import annotations

import csv
import io
import json

import psycopg
import pytest
from fastapi.testclient import TestClient

from .conftest import ADMIN

CSV = {**ADMIN, "Content-Type": "text/csv"}
JSONLD = {**ADMIN, "Content-Type": "application/ld+json"}


def export_csv(client: TestClient, **params: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(client.get("/api/export/catalog.csv", params=params, headers=ADMIN).text)))


def to_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_csv_round_trip_is_idempotent(writer: TestClient) -> None:
    rows = export_csv(writer, status="all")
    r = writer.post("/api/admin/import", content=to_csv(rows), headers=CSV)
    assert r.status_code == 200, r.text[:2000]
    assert r.json() == {"records": 4246, "created": 0, "updated": 0, "unchanged": 4246, "applied": True,
                        "dry_run": False}


def test_csv_import_creates_and_updates(writer: TestClient) -> None:
    rows = export_csv(writer, body="nans")
    changed = dict(rows[0], fee_syp="12345", name_en="Renamed service")
    new = dict(rows[1], id="nans-9001", name_en="A brand new service", name_ar="خدمة جديدة")
    body = to_csv([changed, new, *rows[2:]])
    dry = writer.post("/api/admin/import", params={"dry_run": "true"}, content=body, headers=CSV)
    assert dry.json() == {"records": len(rows), "applied": False, "dry_run": True}
    assert writer.get("/api/services/nans-9001").status_code == 404
    r = writer.post("/api/admin/import", content=body, headers=CSV).json()
    assert (r["created"], r["updated"], r["unchanged"]) == (1, 1, len(rows) - 2)
    assert writer.get(f"/api/services/{changed['id']}/fee").json()["amount"] == 12345
    assert writer.get("/api/services/nans-9001").json()["name_ar"] == "خدمة جديدة"
    assert writer.get("/api/services", params={"q": "brand new"}).json()["items"][0]["id"] == "nans-9001"
    again = writer.post("/api/admin/import", content=body, headers=CSV).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, len(rows))


def test_invalid_records_reported_and_nothing_applied(writer: TestClient, seeded_dsn: str) -> None:
    rows = export_csv(writer, body="moct")
    good = dict(rows[0], name_en="This change must not land")
    bad = [
        dict(rows[1], fee_syp="12.5"),
        dict(rows[2], body_id="atlantis"),
        dict(rows[3], processing_time="three days"),
        dict(rows[4], channels="online|fax"),
        dict(rows[5], requirements="[not json"),
        dict(rows[6], id=rows[7]["id"]),
    ]
    r = writer.post("/api/admin/import", content=to_csv([good, *bad, *rows[7:]]), headers=CSV)
    assert r.status_code == 422
    doc = r.json()
    assert doc["applied"] is False
    by_line = {e["record"]: e for e in doc["errors"]}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 9], doc
    assert "fee_syp" in by_line[3]["errors"][0]
    assert by_line[4]["errors"] == ["body_id: unknown body 'atlantis'"]
    assert "ISO 8601" in by_line[5]["errors"][0]
    assert "channels.1" in by_line[6]["errors"][0]
    assert "unreadable row" in by_line[7]["errors"][0]
    assert by_line[9]["errors"] == ["id: duplicate of record 8"]
    with psycopg.connect(seeded_dsn) as conn:
        assert conn.execute("SELECT name_en FROM services WHERE id = %s", (good["id"],)).fetchone()[0] != (
            "This change must not land")


def test_jsonld_round_trip(writer: TestClient) -> None:
    doc = writer.get("/api/export/catalog.jsonld", params={"body": "mocult"}).json()
    r = writer.post("/api/admin/import", content=json.dumps(doc), headers=JSONLD)
    assert r.status_code == 200, r.text[:2000]
    total = r.json()["records"]
    assert total > 0 and r.json()["unchanged"] == total
    service = next(n for n in doc["@graph"] if n.get("@type") == "cpsv:PublicService")
    service["cv:hasCost"]["cv:hasValue"]["@value"] = "7000.0"
    service["dct:title"][1]["@value"] = "عنوان معدّل"
    r = writer.post("/api/admin/import", content=json.dumps(doc), headers=JSONLD).json()
    assert (r["updated"], r["unchanged"]) == (1, total - 1)
    detail = writer.get(f"/api/services/{service['dct:identifier']}").json()
    assert detail["fee_syp"] == 7000 and detail["name_ar"] == "عنوان معدّل"
    service["cv:hasCost"]["cv:hasValue"]["@value"] = "7000.5"
    r = writer.post("/api/admin/import", content=json.dumps(doc), headers=JSONLD)
    assert r.status_code == 422 and "not a whole number" in r.json()["errors"][0]["errors"][0]


@pytest.mark.parametrize(("body", "headers", "status"), [
    ("id,name\n", CSV, 422),
    ("{not json", JSONLD, 422),
    ('{"@graph": []}', JSONLD, 422),
    ("x", {**ADMIN, "Content-Type": "text/plain"}, 415),
    ("x", {"Content-Type": "text/csv"}, 401),
])
def test_import_rejects_bad_input(writer: TestClient, body: str, headers: dict, status: int) -> None:
    r = writer.post("/api/admin/import", content=body, headers=headers)
    assert r.status_code == status, r.text
