"""Outcome notifications to the portal and billers: signed, retried with backoff, dead letters re-deliverable."""

from __future__ import annotations

import json

import httpx
import pytest
from govcloud_common import signing
from payment.notify import HEADER, BusNotify

pytestmark = pytest.mark.asyncio


def verify(request, key: str, now: float) -> None:
    assert signing.verify(key, request.headers[HEADER], "POST", request.url.path, request.content, now) is None


async def test_portal_is_told_of_a_paid_fee_with_a_signed_notification(system):
    order = (await system.fee_order("k-n1")).json()
    await system.dispatch()
    assert system.receivers.received == []  # queued in the payment's transaction, sent by the notifier
    assert await system.gw.notifier.deliver_due(system.clock()) == {"delivered": 1, "retry": 0, "dead": 0}
    host, request = system.receivers.received[0]
    assert host == "portal" and request.url.path == "/api/payments/notifications"
    verify(request, system.notify_key, system.clock().timestamp())
    with pytest.raises(AssertionError):
        verify(request, "another-key", system.clock().timestamp())
    doc = json.loads(request.content)
    assert doc["event"] == "order.paid" and doc["order_id"] == order["id"] and doc["amount"] == 25_000
    assert doc["receipt_id"] == "R" + order["id"][2:]
    assert await system.gw.notifier.deliver_due(system.clock()) == {"delivered": 0, "retry": 0, "dead": 0}


async def test_billers_get_their_notifications_signed_with_their_own_secret(system):
    await system.pay.put("/api/admin/bills", headers=system.admin,
                         json=[{"reference": "WA-5", "customer": "x", "amount_due": 700}])
    resp = await system.pay.put("/api/admin/billers/water/notify", headers=system.admin,
                                json={"url": "https://water.example/payments", "secret": "water-secret-0123456789"})
    assert resp.status_code == 200
    await system.behaviour("decline")
    await system.order("k-n2", kind="bill", bill_reference="WA-5")
    await system.dispatch()
    await system.gw.notifier.deliver_due(system.clock())
    [(host, request)] = system.receivers.received
    assert host == "water.example" and json.loads(request.content)["event"] == "order.declined"
    verify(request, "water-secret-0123456789", system.clock().timestamp())


async def test_unacknowledged_notifications_back_off_then_become_dead_letters(system):
    system.receivers.answer = 503
    await system.fee_order("k-n3")
    await system.dispatch()
    notifier = system.gw.notifier
    assert await notifier.deliver_due(system.clock()) == {"delivered": 0, "retry": 1, "dead": 0}
    assert await notifier.deliver_due(system.clock()) == {"delivered": 0, "retry": 0, "dead": 0}  # 2 s backoff
    for wait in (2, 4, 8):
        system.clock.advance(seconds=wait)
        result = await notifier.deliver_due(system.clock())
    assert result == {"delivered": 0, "retry": 0, "dead": 1}  # the 4th attempt was the last
    dead = (await system.pay.get("/api/admin/notifications/dead", headers=system.admin)).json()
    assert len(dead) == 1 and dead[0]["attempts"] == 4 and dead[0]["last_error"] == "HTTP 503"
    system.clock.advance(hours=1)
    assert await notifier.deliver_due(system.clock()) == {"delivered": 0, "retry": 0, "dead": 0}

    system.receivers.answer = 200
    resp = await system.pay.post(f"/api/admin/notifications/{dead[0]['id']}/redeliver", headers=system.admin)
    assert resp.status_code == 200
    assert (await system.pay.post("/api/admin/notifications/deliver", headers=system.admin)).json()["delivered"] == 1
    assert (await system.pay.get("/api/admin/notifications/dead", headers=system.admin)).json() == []
    assert (await system.pay.post("/api/admin/notifications/999/redeliver", headers=system.admin)).status_code == 404
    assert len(system.receivers.received) == 5


async def test_the_competent_body_is_told_through_the_bus_once_per_event(system):
    bus: list[httpx.Request] = []

    def bus_handler(request: httpx.Request) -> httpx.Response:
        bus.append(request)
        return httpx.Response(202, json={"messageId": request.headers["x-bus-message-id"], "status": "queued"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(bus_handler)) as client:
        system.gw.cfg.notify.bus = BusNotify(client, "https://127.0.0.1:18071", server_name="bus.gov.test")
        order = (await system.fee_order("k-n4")).json()
        await system.dispatch()
        assert await system.gw.notifier.deliver_due(system.clock()) == {"delivered": 2, "retry": 0, "dead": 0}
    [request] = bus
    assert str(request.url) == "https://127.0.0.1:18071/r1/moi/inbox/notices/payment-notices"  # the service's body
    assert request.headers["prefer"] == "respond-async" and HEADER not in request.headers  # mTLS identifies us
    assert request.headers["x-bus-message-id"] == f"payment-{order['id']}-order.paid"  # a re-send is one message
    assert request.extensions["sni_hostname"] == "bus.gov.test"
    doc = json.loads(request.content)
    assert doc["order_id"] == order["id"] and doc["status"] == "paid" and doc["body"] == "moi"
    assert doc["receipt_id"] == "R" + order["id"][2:] and doc["amount"] == 25_000
    assert [h for h, _ in system.receivers.received] == ["portal"]  # the portal is told as before


async def test_without_a_bus_only_the_portal_is_told_and_the_order_keeps_its_body(system):
    await system.fee_order("k-n5")
    await system.dispatch()
    assert system.sql("SELECT target FROM notifications") == [("portal",)]
    assert system.sql("SELECT body FROM orders") == [("moi",)]
