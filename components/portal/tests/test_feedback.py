"""Citizen feedback and its moderation: validation, spam defences, lifecycle, auth, statistics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from portal.app import build_app

from .conftest import ADMIN, ADMIN_TOKEN


def published_id(client: TestClient, **params: object) -> str:
    return client.get("/api/services", params={"limit": 1, **params}).json()["items"][0]["id"]


def test_feedback_lifecycle(writer: TestClient) -> None:
    sid = published_id(writer, body="moh")
    r = writer.post(f"/api/services/{sid}/feedback",
                    json={"kind": "wrong_information", "field": "fees", "text": "الرسم أصبح 30,000 ليرة"})
    assert r.status_code == 201, r.text
    fb = r.json()
    assert fb["status"] == "new" and fb["field"] == "fees" and fb["moderated_at"] is None
    listed = writer.get("/api/admin/feedback", params={"status": "new"}, headers=ADMIN).json()
    assert [i["id"] for i in listed["items"]] == [fb["id"]] and listed["total"] == 1

    # new -> resolved skips moderation: refused with the reason and what is allowed
    r = writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": "resolved"}, headers=ADMIN)
    assert r.status_code == 409
    assert r.json()["detail"] == (f"feedback {fb['id']} is 'new' and cannot become 'resolved'; "
                                  "allowed from 'new': accepted, rejected")
    r = writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": "accepted", "note": "checked"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["moderated_at"]
    r = writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": "rejected"}, headers=ADMIN)
    assert r.status_code == 409 and "allowed from 'accepted': resolved" in r.json()["detail"]
    assert writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": "resolved"},
                        headers=ADMIN).json()["status"] == "resolved"
    r = writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": "accepted"}, headers=ADMIN)
    assert r.status_code == 409 and "nothing (final)" in r.json()["detail"]
    # unknown target status: schema error
    r = writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": "new"}, headers=ADMIN)
    assert r.status_code == 422
    assert writer.patch("/api/admin/feedback/999999", json={"status": "accepted"}, headers=ADMIN).status_code == 404


def test_rejected_then_resolved(writer: TestClient) -> None:
    sid = published_id(writer)
    fb = writer.post(f"/api/services/{sid}/feedback", json={"kind": "useful", "useful": False}).json()
    for target in ("rejected", "resolved"):
        r = writer.patch(f"/api/admin/feedback/{fb['id']}", json={"status": target}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["status"] == target


@pytest.mark.parametrize(("payload", "message"), [
    ({"kind": "useful"}, "kind 'useful' needs useful: true or false"),
    ({"kind": "useful", "useful": True, "field": "fees"}, "kind 'useful' takes no field"),
    ({"kind": "wrong_information", "text": "wrong fee"}, "kind 'wrong_information' needs the field concerned"),
    ({"kind": "wrong_information", "field": "fees", "text": " "}, "needs a text describing what is wrong"),
    ({"kind": "wrong_information", "field": "colour", "text": "blue"}, "Input should be"),
    ({"kind": "praise", "useful": True}, "Input should be 'useful' or 'wrong_information'"),
    ({"kind": "useful", "useful": True, "text": "x" * 2001}, "at most 2000 characters"),
])
def test_feedback_validation(writer: TestClient, payload: dict, message: str) -> None:
    r = writer.post(f"/api/services/{published_id(writer)}/feedback", json=payload)
    assert r.status_code == 422
    assert message in str(r.json()["detail"])


def test_feedback_only_on_published_services(writer: TestClient) -> None:
    draft = writer.get("/api/services", params={"status": "draft", "limit": 1}, headers=ADMIN).json()["items"][0]
    r = writer.post(f"/api/services/{draft['id']}/feedback", json={"kind": "useful", "useful": True})
    assert r.status_code == 404


def test_honeypot_and_rate_limit(seeded_dsn: str) -> None:
    with TestClient(build_app(seeded_dsn, admin_token=ADMIN_TOKEN, feedback_per_minute=3)) as client:
        sid = published_id(client)
        bot = client.post(f"/api/services/{sid}/feedback",
                          json={"kind": "useful", "useful": True, "website": "http://spam.example"})
        assert bot.status_code == 400
        codes = [client.post(f"/api/services/{sid}/feedback", json={"kind": "useful", "useful": True}).status_code
                 for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        assert client.get("/api/admin/feedback", headers=ADMIN).json()["total"] == 3


def test_rate_limit_is_per_citizen_behind_a_trusted_proxy(seeded_dsn: str) -> None:
    app = build_app(seeded_dsn, admin_token=ADMIN_TOKEN, feedback_per_minute=1, proxies="10.0.0.0/8")
    with TestClient(app, client=("10.1.2.3", 5000)) as client:
        sid = published_id(client)

        def send(xff: str) -> int:
            return client.post(f"/api/services/{sid}/feedback", json={"kind": "useful", "useful": True},
                               headers={"X-Forwarded-For": xff}).status_code

        assert send("198.51.100.7") == 201
        assert send("198.51.100.8, 10.9.9.9") == 201  # the ingress hop is trusted, the citizen is not
        assert send("203.0.113.1, 198.51.100.7") == 429  # a forged left-most entry does not help
    # without trusted proxies X-Forwarded-For is ignored: every request counts against the peer
    with TestClient(build_app(seeded_dsn, admin_token=ADMIN_TOKEN, feedback_per_minute=1)) as client:
        codes = [client.post(f"/api/services/{sid}/feedback", json={"kind": "useful", "useful": True},
                             headers={"X-Forwarded-For": xff}).status_code for xff in ("192.0.2.1", "192.0.2.2")]
        assert codes == [201, 429]


def test_moderation_needs_the_admin_token(writer: TestClient) -> None:
    r = writer.get("/api/admin/feedback")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert writer.get("/api/admin/feedback", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert writer.patch("/api/admin/feedback/1", json={"status": "accepted"}).status_code == 401
    assert writer.get("/api/admin/statistics", headers={"Authorization": "Bearer "}).status_code == 401
    import base64

    basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
    assert writer.get("/api/admin/statistics", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_admin_unconfigured_is_503(seeded_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVCLOUD_SECRET_ADMIN_TOKEN", raising=False)
    with TestClient(build_app(seeded_dsn)) as client:
        r = client.get("/api/admin/feedback", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 503 and "GOVCLOUD_SECRET_ADMIN_TOKEN" in r.json()["detail"]
    monkeypatch.setenv("GOVCLOUD_SECRET_ADMIN_TOKEN", "from-env")
    with TestClient(build_app(seeded_dsn)) as client:
        assert client.get("/api/admin/feedback", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_statistics(writer: TestClient) -> None:
    cra = writer.get("/api/services", params={"body": "cra", "limit": 3}).json()["items"]
    ids = []
    for s in cra[:2]:
        ids.append(writer.post(f"/api/services/{s['id']}/feedback",
                               json={"kind": "wrong_information", "field": "steps", "text": "step 2 is gone"}).json())
    writer.post(f"/api/services/{cra[2]['id']}/feedback", json={"kind": "useful", "useful": True})
    writer.post(f"/api/services/{cra[2]['id']}/feedback", json={"kind": "useful", "useful": False})
    writer.patch(f"/api/admin/feedback/{ids[0]['id']}", json={"status": "accepted"}, headers=ADMIN)
    writer.patch(f"/api/admin/feedback/{ids[1]['id']}", json={"status": "rejected"}, headers=ADMIN)
    stats = {r["body_id"]: r for r in writer.get("/api/admin/statistics", headers=ADMIN).json()}
    assert len(stats) == 26
    assert sum(r["published"] for r in stats.values()) == 2894 and sum(r["services"] for r in stats.values()) == 4246
    row = stats["cra"]
    assert (row["feedback"], row["useful_yes"], row["useful_no"], row["reports"], row["reports_new"],
            row["reports_accepted"], row["flagged_services"]) == (4, 1, 1, 2, 0, 1, 1)
    assert row["correctness_score"] == round(1 - 1 / row["published"], 4)
    assert stats["moi"]["correctness_score"] == 1.0 and stats["moi"]["feedback"] == 0
    # resolving the accepted report restores the score
    writer.patch(f"/api/admin/feedback/{ids[0]['id']}", json={"status": "resolved"}, headers=ADMIN)
    assert {r["body_id"]: r for r in writer.get("/api/admin/statistics", headers=ADMIN).json()}["cra"][
        "correctness_score"] == 1.0
