"""Reliable asynchronous delivery on JetStream: persisted, retried with backoff through a provider outage,
de-duplicated (client re-sends and lost acks), dead-lettered after max attempts, replayable."""

from __future__ import annotations

import json
from types import SimpleNamespace

import psycopg
import pytest

pytestmark = pytest.mark.asyncio
NOTICES = "/r1/mof/inbox/notices/payment-notices"


def notice(n: str) -> dict[str, str]:
    return {"noticeId": n, "nationalId": "01010000001", "amount": "2500", "currency": "SYP",
            "reference": f"PAY-{n}", "service": "civil-status-extract"}


async def send(harness, msg_id: str, doc: dict[str, str]) -> dict[str, object]:
    async with harness.client("portal") as c:
        r = await c.post(NOTICES, json=doc, headers={"prefer": "respond-async", "x-bus-message-id": msg_id})
    assert r.status_code == 202, r.text
    return r.json()


def inbox(harness) -> dict[str, object]:
    sim = harness.bodysystems.server.config.app.state.sim
    return {"notices": sim["notices"].get("mof", {}), "deliveries": sim["deliveries"].get("mof", 0)}


async def fault(harness, status: int | None) -> None:
    r = await harness.admin.put(f"{harness.bodysystems.url}/_sim/faults", json={"system": "mof/inbox",
                                                                                 "status": status})
    assert r.status_code == 200


async def test_async_message_is_delivered_once(harness) -> None:
    first = await send(harness, "m-1", notice("N-1"))
    again = await send(harness, "m-1", notice("N-1"))  # the client re-sends: stored once
    assert first["status"] == "queued" and not first["duplicate"] and again["duplicate"]
    assert await harness.bus.delivery.wait_for("m-1", {"delivered"}, 10) == "delivered"
    box = inbox(harness)
    assert list(box["notices"]) == ["m-1"] and box["deliveries"] == 1
    assert box["notices"]["m-1"]["client"] == "moi/portal"
    status = (await harness.admin.get("/admin/messages/m-1")).json()
    assert status["state"] == "delivered" and status["attempts"] == 1


async def test_provider_outage_then_back_nothing_lost_nothing_twice(harness) -> None:
    harness.bus.delivery.max_attempts = 100
    await fault(harness, 503)
    ids = [f"out-{i}" for i in range(5)]
    for i, mid in enumerate(ids):
        await send(harness, mid, notice(f"O-{i}"))
    for mid in ids:
        assert await harness.bus.delivery.wait_for(mid, {"retrying"}, 10) == "retrying"
    assert inbox(harness)["deliveries"] == 0
    await fault(harness, None)
    harness.clock.now += 60  # the provider's circuit opened during the outage: let its cool-down pass
    for mid in ids:
        assert await harness.bus.delivery.wait_for(mid, {"delivered"}, 15) == "delivered"
    box = inbox(harness)
    assert sorted(box["notices"]) == ids and box["deliveries"] == 5
    assert (await harness.admin.get("/admin/queue")).json()["depth"] == 0


async def test_messages_survive_a_bus_restart(harness) -> None:
    from bus.app import Bus

    harness.bus.delivery.max_attempts = 100
    await fault(harness, 503)
    await send(harness, "r-1", notice("R-1"))
    assert await harness.bus.delivery.wait_for("r-1", {"retrying"}, 10) == "retrying"
    cfg = harness.bus.cfg
    await harness.bus.stop()
    await fault(harness, None)
    harness.bus = Bus(cfg, breaker_clock=harness.clock)
    await harness.bus.start()
    assert await harness.bus.delivery.wait_for("r-1", {"delivered"}, 40) == "delivered"
    assert list(inbox(harness)["notices"]) == ["r-1"]


async def test_dead_letter_after_max_attempts_then_replay(harness, pg_dsn: str) -> None:
    await fault(harness, 503)
    await send(harness, "d-1", notice("D-1"))
    assert await harness.bus.delivery.wait_for("d-1", {"dead"}, 15) == "dead"
    dead = (await harness.admin.get("/admin/dead-letters")).json()
    assert len(dead) == 1
    assert dead[0]["messageId"] == "d-1" and dead[0]["attempts"] == 3
    assert dead[0]["reason"].startswith("gave up after 3 attempts")
    assert inbox(harness)["deliveries"] == 0
    await fault(harness, None)
    harness.clock.now += 60  # past the circuit's cool-down
    r = await harness.admin.post(f"/admin/dead-letters/{dead[0]['seq']}/replay")
    assert r.status_code == 200, r.text
    assert await harness.bus.delivery.wait_for("d-1", {"delivered"}, 10) == "delivered"
    assert list(inbox(harness)["notices"]) == ["d-1"]
    assert (await harness.admin.get("/admin/dead-letters")).json() == []
    await harness.bus.msglog.flush()
    with psycopg.connect(pg_dsn) as conn:
        attempts = [r[0]["status"] for r in conn.execute(
            "SELECT record FROM message_log WHERE record->>'mode' = 'async-deliver' ORDER BY seq")]
    assert attempts == [503, 503, 503, 201]


async def test_provider_refusal_is_dead_lettered_at_once(harness) -> None:
    await send(harness, "bad-1", {"noticeId": "B-1"})  # the provider answers 422
    assert await harness.bus.delivery.wait_for("bad-1", {"dead"}, 10) == "dead"
    (dead,) = (await harness.admin.get("/admin/dead-letters")).json()
    assert dead["attempts"] == 1 and dead["reason"].startswith("provider refused (HTTP 422)")


async def test_async_rest_to_soap_conversion(harness) -> None:
    async with harness.client("portal") as c:
        r = await c.post("/r1/mola/landregistry/parcels/RegisterTransfer", headers={"prefer": "respond-async"},
                         json={"parcelId": "DMS-1001", "newOwner": "01010000002"})
    assert r.status_code == 202
    mid = r.json()["messageId"]
    assert await harness.bus.delivery.wait_for(mid, {"delivered"}, 10) == "delivered"


async def test_redelivery_after_a_lost_ack_is_not_delivered_again(harness) -> None:
    await send(harness, "ack-1", notice("A-1"))
    assert await harness.bus.delivery.wait_for("ack-1", {"delivered"}, 10) == "delivered"
    acked: list[str] = []

    async def ack() -> None:
        acked.append("ack")

    data = json.dumps({"service": "mof/inbox/notices", "client": "moi/portal", "method": "POST",
                       "path": "payment-notices", "query": "", "soap": False, "correlationId": "c", "headers": [],
                       "body": ""}).encode()
    redelivered = SimpleNamespace(headers={"Nats-Msg-Id": "ack-1"}, data=data, ack=ack,
                                  metadata=SimpleNamespace(num_delivered=2))
    await harness.bus.delivery._handle(redelivered)
    assert acked == ["ack"] and inbox(harness)["deliveries"] == 1


async def test_async_needs_an_access_right_too(harness) -> None:
    async with harness.client("clinic") as c:
        r = await c.post(NOTICES, json=notice("X"), headers={"prefer": "respond-async"})
    assert r.status_code == 403 and r.json()["type"] == "urn:govcloud:bus:access-denied"
