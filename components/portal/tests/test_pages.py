"""Server-rendered pages: Arabic RTL by default, English switch, the whole service model, forms without JS."""

from __future__ import annotations

import base64
import re

from fastapi.testclient import TestClient

from .conftest import ADMIN, ADMIN_TOKEN

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_home_is_arabic_rtl_with_english_switch(reader: TestClient) -> None:
    r = reader.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<html lang="ar" dir="rtl">' in r.text and "بوابة الخدمات الحكومية" in r.text
    assert 'href="/?lang=en"' in r.text and 'role="search"' in r.text
    en = reader.get("/", params={"lang": "en", "q": "birth certificate"})
    assert '<html lang="en" dir="ltr">' in en.text
    assert "Birth certificate" in en.text or "birth certificate" in en.text
    assert 'rel="next"' in en.text and "lang=en" in re.search(r'rel="next" href="([^"]+)"', en.text).group(1)


def test_search_page_arabic(reader: TestClient) -> None:
    r = reader.get("/", params={"q": "احوال"})
    assert "إخراج قيد" in r.text or "شهادة ولادة" in r.text
    assert "مديرية الشؤون المدنية" in r.text


def test_directory_and_body_page(reader: TestClient) -> None:
    r = reader.get("/bodies")
    assert r.text.count('href="/bodies/') == 26 and "وزارة الداخلية" in r.text
    moi = reader.get("/bodies/moi", params={"lang": "en"})
    assert "Ministry of Interior" in moi.text and 'href="/bodies/cra?lang=en"' in moi.text
    assert reader.get("/bodies/nope").status_code == 404


def test_service_page_shows_the_whole_model(reader: TestClient) -> None:
    s = reader.get("/api/services", params={"fee_min": 1, "limit": 1}).json()["items"][0]
    detail = reader.get(f"/api/services/{s['id']}").json()
    page = reader.get(f"/services/{s['id']}").text
    assert detail["name_ar"] in page and detail["description_ar"] in page
    assert detail["competent_authority"]["name_ar"] in page
    for req in detail["requirements"]:
        assert req["ar"] in page
    assert f'<data value="{detail["fee_syp"]}">' in page and detail["fee_legal_basis_ar"] in page
    assert f'<time datetime="{detail["processing_time"]}">' in page
    assert all(step["ar"] in page for step in detail["steps"])
    assert detail["contact"]["email"] in page and detail["legal_resources"][0]["ar"] in page
    assert page.count("<form") == 2 and 'name="website"' in page
    en = reader.get(f"/services/{s['id']}", params={"lang": "en"}).text
    assert detail["name_en"] in en and detail["requirements"][0]["en"] in en


def test_feedback_forms(writer: TestClient) -> None:
    sid = writer.get("/api/services", params={"limit": 1}).json()["items"][0]["id"]
    r = writer.post(f"/services/{sid}/feedback", content="kind=useful&useful=yes&text=", headers=FORM,
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/services/{sid}?sent=1#feedback"
    assert "شكراً لك" in writer.get(r.headers["location"]).text
    r = writer.post(f"/services/{sid}/feedback?lang=en", content="kind=wrong_information&field=fees&text=",
                    headers=FORM)
    assert r.status_code == 422 and "needs a text describing what is wrong" in r.text and 'dir="ltr"' in r.text
    r = writer.post(f"/services/{sid}/feedback", content="kind=wrong_information&field=steps&text=step+3+moved",
                    headers=FORM, follow_redirects=False)
    assert r.status_code == 303
    r = writer.post(f"/services/{sid}/feedback", content="kind=useful&useful=yes&website=spam", headers=FORM)
    assert r.status_code == 400
    big = "kind=useful&useful=yes&text=" + "x" * 9000
    assert writer.post(f"/services/{sid}/feedback", content=big, headers=FORM).status_code == 413
    items = writer.get("/api/admin/feedback", headers=ADMIN).json()["items"]
    assert [(i["kind"], i["useful"], i["field"]) for i in items] == [("useful", True, None),
                                                                       ("wrong_information", None, "steps")]


def test_admin_pages(writer: TestClient) -> None:
    assert writer.get("/admin/feedback").status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()}
    sid = writer.get("/api/services", params={"limit": 1}).json()["items"][0]["id"]
    fb = writer.post(f"/api/services/{sid}/feedback",
                     json={"kind": "wrong_information", "field": "contact", "text": "phone changed"}).json()
    page = writer.get("/admin/feedback", headers=basic).text
    assert "phone changed" in page and f'action="/admin/feedback/{fb["id"]}"' in page
    r = writer.post(f"/admin/feedback/{fb['id']}", content="status=accepted&back=new",
                    headers={**basic, **FORM}, follow_redirects=False)
    assert r.status_code == 303
    r = writer.post(f"/admin/feedback/{fb['id']}", content="status=accepted", headers={**basic, **FORM})
    assert r.status_code == 409 and "cannot become" in r.text
    cross = {**basic, **FORM, "Origin": "https://evil.example"}
    assert writer.post(f"/admin/feedback/{fb['id']}", content="status=resolved", headers=cross).status_code == 403
    stats = writer.get("/admin/statistics", headers=basic, params={"lang": "en"}).text
    assert "Civil Registry Directorate" in stats and "Correctness score" in stats


def test_static_css(reader: TestClient) -> None:
    r = reader.get("/static/portal.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
