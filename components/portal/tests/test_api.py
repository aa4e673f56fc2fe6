"""The JSON API over the seeded catalog: search in both languages, filters, pagination, detail, fee, bodies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import ADMIN


def names(r, lang: str = "en") -> list[str]:
    assert r.status_code == 200, r.text
    return [i[f"name_{lang}"] for i in r.json()["items"]]


def test_list_defaults_to_published(reader: TestClient) -> None:
    r = reader.get("/api/services")
    body = r.json()
    assert body["total"] == 2894 and body["limit"] == 20 and body["offset"] == 0 and len(body["items"]) == 20
    assert {i["status"] for i in body["items"]} == {"published"}


def test_search_english_ranks_names_first(reader: TestClient) -> None:
    hits = names(reader.get("/api/services", params={"q": "passport", "limit": 10}))
    assert len(hits) == 10 and all("passport" in h.lower() for h in hits)
    # english stemming: plural and inflected forms still match
    assert reader.get("/api/services", params={"q": "renewing passports"}).json()["total"] > 0
    assert all("Renewal of passport" in n for n in names(reader.get(
        "/api/services", params={"q": "renewal passport", "body": "moi", "limit": 3})))


def test_search_arabic_with_normalisation(reader: TestClient) -> None:
    plain = reader.get("/api/services", params={"q": "جواز سفر", "limit": 5})
    assert all("جواز سفر" in n for n in names(plain, "ar"))
    total = plain.json()["total"]
    # alef/hamza forms, taa marbuta, diacritics, tatweel and the article normalise to the same query
    for variant in ("جَوَاز سفـــر", "الجواز السفر"):
        assert reader.get("/api/services", params={"q": variant}).json()["total"] == total
    civil = reader.get("/api/services", params={"q": "احوال", "limit": 100})
    assert civil.json()["total"] > 0 and {i["body_id"] for i in civil.json()["items"]} == {"cra"}
    assert reader.get("/api/services", params={"q": "أحوال"}).json()["total"] == civil.json()["total"]
    issue = names(reader.get("/api/services", params={"q": "اصدار شهادة ولادة", "limit": 3}), "ar")
    assert issue and all(n.startswith("إصدار شهادة ولادة") for n in issue)


def test_search_finds_documents(reader: TestClient) -> None:
    r = reader.get("/api/services", params={"q": "non-conviction record", "body": "moh", "limit": 100})
    assert r.json()["total"] > 0
    for item in r.json()["items"][:5]:
        detail = reader.get(f"/api/services/{item['id']}").json()
        assert any("Non-conviction" in d["en"] for d in detail["requirements"])


def test_search_nonsense_and_injection(reader: TestClient) -> None:
    assert reader.get("/api/services", params={"q": "zzqxv"}).json() == {
        "total": 0, "limit": 20, "offset": 0, "items": []}
    r = reader.get("/api/services", params={"q": "passport') OR 1=1; --:* & !"})
    assert r.status_code == 200


def test_filters(reader: TestClient) -> None:
    r = reader.get("/api/services", params={"body": "cra", "channel": "online", "fee_max": 1000, "limit": 100})
    items = r.json()["items"]
    assert items and all(i["body_id"] == "cra" and "online" in i["channels"] and i["fee_syp"] <= 1000 for i in items)
    r = reader.get("/api/services", params={"category": "health", "fee_min": 50000, "max_hours": 72, "limit": 100})
    for i in r.json()["items"]:
        assert i["category"] == "health" and i["fee_syp"] >= 50000
        assert i["processing_time"] in ("PT1H", "PT2H", "PT4H", "P1D", "P2D", "P3D")
    assert reader.get("/api/services", params={"channel": "fax"}).status_code == 422


def test_pagination_bounds(reader: TestClient) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 10_001}, {"limit": "x"}):
        assert reader.get("/api/services", params=params).status_code == 422, params
    pages = [reader.get("/api/services", params={"limit": 100, "offset": o}).json() for o in (0, 100)]
    assert len({i["id"] for p in pages for i in p["items"]}) == 200
    past = reader.get("/api/services", params={"offset": 5000}).json()
    assert past["items"] == [] and past["total"] == 2894
    last = reader.get("/api/services", params={"offset": 2890, "limit": 100}).json()
    assert len(last["items"]) == 4


def test_status_filter_needs_admin(reader: TestClient) -> None:
    assert reader.get("/api/services", params={"status": "draft"}).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert reader.get("/api/services", params={"status": "draft"}, headers=bad).status_code == 403
    r = reader.get("/api/services", params={"status": "all", "limit": 1}, headers=ADMIN)
    assert r.json()["total"] == 4246
    r = reader.get("/api/services", params={"status": "withdrawn", "limit": 100}, headers=ADMIN)
    assert {i["status"] for i in r.json()["items"]} == {"withdrawn"}


def test_service_detail_and_visibility(reader: TestClient) -> None:
    sid = reader.get("/api/services", params={"limit": 1}).json()["items"][0]["id"]
    s = reader.get(f"/api/services/{sid}").json()
    assert s["competent_authority"]["id"] == s["body_id"] and s["competent_authority"]["name_ar"]
    assert s["requirements"] and s["steps"] and s["legal_resources"] and s["contact"]["phone"].startswith("+963")
    draft = reader.get("/api/services", params={"status": "draft", "limit": 1}, headers=ADMIN).json()["items"][0]
    assert reader.get(f"/api/services/{draft['id']}").status_code == 404
    assert reader.get(f"/api/services/{draft['id']}", headers=ADMIN).json()["status"] == "draft"
    assert reader.get("/api/services/nope-0000").json() == {"detail": "service 'nope-0000' not found"}


def test_fee_endpoint_is_exact_integer(reader: TestClient) -> None:
    items = reader.get("/api/services", params={"fee_min": 1, "limit": 5}).json()["items"]
    for item in items:
        fee = reader.get(f"/api/services/{item['id']}/fee").json()
        assert fee["amount"] == fee["amount_syp"] == item["fee_syp"] and isinstance(fee["amount"], int)
        assert fee["name"] == item["name_en"] and fee["name_ar"] == item["name_ar"]
        assert fee["currency"] == "SYP" and fee["legal_basis_en"] and "cash" in fee["payment_channels"]
        assert fee["body_id"] == item["body_id"]
    draft = reader.get("/api/services", params={"status": "draft", "limit": 1}, headers=ADMIN).json()["items"][0]
    assert reader.get(f"/api/services/{draft['id']}/fee").status_code == 404


def test_bodies_directory(reader: TestClient) -> None:
    bodies = reader.get("/api/bodies").json()
    assert len(bodies) == 26 and sum(b["published_services"] for b in bodies) == 2894
    assert bodies[0]["type"] == "ministry"
    moi = reader.get("/api/bodies/moi").json()
    assert [a["id"] for a in moi["agencies"]] == ["cra"]
    assert sum(moi["categories"].values()) == moi["published_services"]
    assert reader.get("/api/bodies/xx").status_code == 404


def test_openapi(reader: TestClient) -> None:
    spec = reader.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/services", "/api/services/{service_id}", "/api/services/{service_id}/fee",
                 "/api/services/{service_id}/feedback", "/api/bodies", "/api/admin/feedback/{feedback_id}",
                 "/api/admin/statistics", "/api/export/catalog.jsonld"):
        assert path in spec["paths"], path


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_platform_endpoints(reader: TestClient, path: str) -> None:
    assert reader.get(path).status_code == 200


@pytest.mark.asyncio
async def test_payment_reads_the_fee(catalog_dsn: str) -> None:
    """Contract with the payment component: its own fee client understands this endpoint."""
    import httpx
    from payment.fees import PortalFeeSource, UnknownService
    from portal.app import build_app

    app = build_app(catalog_dsn, admin_token="x", pool_size=2)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
        items = (await client.get("/api/services", params={"fee_min": 1, "limit": 3})).json()["items"]
        source = PortalFeeSource(client)
        for item in items:
            fee = await source.fee(item["id"])
            assert (fee.service_id, fee.amount, fee.currency, fee.name) == (
                item["id"], item["fee_syp"], "SYP", item["name_en"])
        with pytest.raises(UnknownService):
            await source.fee("nope-0000")
