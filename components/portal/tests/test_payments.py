"""The payment gateway's signed notifications: verified before anything is written, stored once, exposed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from govcloud_common import signing
from portal.app import build_app
from portal.payments import HEADER, PATH

from .conftest import ADMIN, ADMIN_TOKEN

KEY = "portal-test-notify-key"  # a throwaway test key
SERVICE = "cra-0001"


def notification(order_id: str = "PO0123456789abcdef01234567", status: str = "paid", service_id: str = SERVICE,
                 amount: int = 2500, at: str = "2026-12-07T07:00:00+00:00", **kw: Any) -> dict[str, Any]:
    """As ``payment.notify.payload_of`` writes it."""
    return {"event": f"order.{status}", "order_id": order_id, "status": status, "amount": amount, "currency": "SYP",
            "service_id": service_id, "bill_reference": None, "switch_ref": "SW42",
            "receipt_id": "R" + order_id[2:] if status == "paid" else None, "at": at, **kw}


def signed(doc: dict[str, Any], key: str = KEY, now: float | None = None, path: str = PATH) -> dict[str, Any]:
    """The request the gateway sends (``payment.notify.Notifier._send``)."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    header = signing.sign(key, "POST", path, body, time.time() if now is None else now)
    return {"content": body, "headers": {"content-type": "application/json", HEADER: header}}


def rows(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        events = conn.execute("SELECT count(*) FROM payment_events").fetchone()
        orders = conn.execute("SELECT count(*) FROM payment_orders").fetchone()
    assert events is not None and orders is not None
    return events[0], orders[0]


@pytest.fixture
def portal(seeded_dsn: str) -> Iterator[TestClient]:
    with TestClient(build_app(seeded_dsn, admin_token=ADMIN_TOKEN, pool_size=4, notify_key=KEY)) as client:
        yield client


@pytest.fixture
def service(portal: TestClient) -> dict[str, Any]:
    doc: dict[str, Any] = portal.get(f"/api/services/{SERVICE}").json()
    assert doc["body_id"] == "cra"
    return doc


def test_a_signed_notification_is_stored_and_exposed(portal: TestClient, seeded_dsn: str,
                                                     service: dict[str, Any]) -> None:
    doc = notification(amount=service["fee_syp"])
    r = portal.post(PATH, **signed(doc))
    assert r.status_code == 200, r.text
    assert r.json() == {"order_id": doc["order_id"], "event": "order.paid", "status": "paid", "duplicate": False,
                        "service_known": True}
    assert rows(seeded_dsn) == (1, 1)

    got = portal.get(f"/api/payments/{doc['order_id']}").json()
    assert {k: got[k] for k in ("order_id", "service_id", "service_known", "status", "amount", "currency",
                                "receipt_id")} == {
        "order_id": doc["order_id"], "service_id": SERVICE, "service_known": True, "status": "paid",
        "amount": service["fee_syp"], "currency": "SYP", "receipt_id": doc["receipt_id"]}
    assert got["at"].startswith("2026-12-07T07:00:00") and got["updated_at"]

    by_service = portal.get("/api/admin/payments/services", headers=ADMIN).json()
    assert by_service == [{"service_id": SERVICE, "body_id": "cra", "paid_orders": 1,
                           "paid_amount_syp": service["fee_syp"], "last_paid_at": got["at"]}]
    assert portal.get("/api/admin/payments/services", params={"body": "moi"}, headers=ADMIN).json() == []
    stats = {s["body_id"]: s for s in portal.get("/api/admin/statistics", headers=ADMIN).json()}
    assert (stats["cra"]["paid_orders"], stats["cra"]["paid_amount_syp"]) == (1, service["fee_syp"])
    assert (stats["moi"]["paid_orders"], stats["moi"]["paid_amount_syp"]) == (0, 0)


def test_a_redelivery_is_acknowledged_and_changes_nothing(portal: TestClient, seeded_dsn: str) -> None:
    doc = notification()
    first = signed(doc)
    assert portal.post(PATH, **first).json()["duplicate"] is False
    # the gateway's retry (signed afresh) and a replay of the very same request: both 200, still one row
    for again in (signed(doc, now=time.time() + 5), first):
        r = portal.post(PATH, **again)
        assert r.status_code == 200 and r.json()["duplicate"] is True and r.json()["status"] == "paid", r.text
    assert rows(seeded_dsn) == (1, 1)
    assert portal.get("/api/admin/payments/services", headers=ADMIN).json()[0]["paid_orders"] == 1


def _tampered(doc: dict[str, Any]) -> dict[str, Any]:
    req = signed(doc)
    req["content"] = req["content"].replace(b'"amount":2500', b'"amount":1')
    return req


def _header(value: str | None) -> Any:
    def make(doc: dict[str, Any]) -> dict[str, Any]:
        req = signed(doc)
        if value is None:
            del req["headers"][HEADER]
        else:
            req["headers"][HEADER] = value
        return req
    return make


@pytest.mark.parametrize(("make", "why"), [
    (lambda d: signed(d, key="another-key"), "bad signature"),
    (_tampered, "bad signature"),
    (lambda d: signed(d, path="/api/other"), "bad signature"),
    (lambda d: signed(d, now=time.time() - signing.TOLERANCE_S - 5), "stale signature"),
    (lambda d: signed(d, now=time.time() + signing.TOLERANCE_S + 5), "stale signature"),
    (_header(None), "missing signature"),
    (_header("v1=abc"), "malformed signature"),
    (_header("t=soon,v1=abc"), "malformed signature"),
], ids=["wrong-key", "tampered-body", "other-path", "stale", "future", "missing", "no-timestamp", "bad-timestamp"])
def test_a_bad_signature_is_401_problem_and_nothing_is_written(portal: TestClient, seeded_dsn: str, make: Any,
                                                               why: str) -> None:
    doc = notification()
    r = portal.post(PATH, **make(doc))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json" and "Signature" in r.headers["www-authenticate"]
    problem = r.json()
    assert problem["status"] == 401 and problem["title"] == "invalid signature" and why in problem["detail"]
    assert rows(seeded_dsn) == (0, 0)
    assert portal.get(f"/api/payments/{doc['order_id']}").status_code == 404


def test_an_unknown_service_is_recorded_and_flagged(portal: TestClient, seeded_dsn: str) -> None:
    doc = notification(service_id="xyz-9999")
    r = portal.post(PATH, **signed(doc))
    assert r.status_code == 200 and r.json()["service_known"] is False  # refusing would only dead-letter it
    assert portal.get(f"/api/payments/{doc['order_id']}").json()["service_known"] is False
    [row] = portal.get("/api/admin/payments/services", headers=ADMIN).json()
    assert row["service_id"] == "xyz-9999" and row["body_id"] is None
    stats = portal.get("/api/admin/statistics", headers=ADMIN).json()
    assert sum(s["paid_orders"] for s in stats) == 0  # no body to count it under
    assert rows(seeded_dsn) == (1, 1)


@pytest.mark.parametrize("doc", [
    {**notification(), "event": "order.declined"},
    {**notification(), "amount": -1},
    {**notification(), "at": "yesterday"},
    {k: v for k, v in notification().items() if k != "service_id"},
], ids=["event-status-mismatch", "negative-amount", "bad-time", "no-service"])
def test_a_signed_but_invalid_notification_is_422_and_nothing_is_written(portal: TestClient, seeded_dsn: str,
                                                                         doc: dict[str, Any]) -> None:
    r = portal.post(PATH, **signed(doc))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert rows(seeded_dsn) == (0, 0)


def test_a_later_state_is_not_overwritten_by_an_earlier_one(portal: TestClient, seeded_dsn: str) -> None:
    paid = notification(at="2026-12-07T07:00:05+00:00")
    earlier = notification(status="failed", at="2026-12-07T07:00:01+00:00")  # delivered late
    assert portal.post(PATH, **signed(paid)).json()["status"] == "paid"
    r = portal.post(PATH, **signed(earlier))
    assert r.status_code == 200 and r.json() == {**r.json(), "duplicate": False, "status": "paid"}
    got = portal.get(f"/api/payments/{paid['order_id']}").json()
    assert got["status"] == "paid" and got["receipt_id"] == paid["receipt_id"]
    assert rows(seeded_dsn) == (2, 1)


def test_without_the_key_notifications_are_503(seeded_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVCLOUD_SECRET_NOTIFY_KEY", raising=False)
    with TestClient(build_app(seeded_dsn, pool_size=2)) as client:
        r = client.post(PATH, **signed(notification()))
        assert r.status_code == 503 and "payment/notify-key" in r.json()["detail"]
    monkeypatch.setenv("GOVCLOUD_SECRET_NOTIFY_KEY", KEY)  # the contract's variable
    with TestClient(build_app(seeded_dsn, pool_size=2)) as client:
        assert client.post(PATH, **signed(notification())).status_code == 200
    assert rows(seeded_dsn) == (1, 1)


def test_admin_counts_need_the_token_and_unknown_orders_are_404(portal: TestClient) -> None:
    assert portal.get("/api/admin/payments/services").status_code == 401
    r = portal.get("/api/payments/PO-nothing-yet")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_openapi_documents_the_payment_endpoints(portal: TestClient) -> None:
    spec = portal.get("/openapi.json").json()
    post = spec["paths"][PATH]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["title"] == "PaymentNotification"
    assert any(p["name"] == HEADER for p in post["parameters"]) and "401" in post["responses"]
    assert "/api/payments/{order_id}" in spec["paths"] and "/api/admin/payments/services" in spec["paths"]
