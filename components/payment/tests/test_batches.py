"""The protocol's batch forms: requests to pay coalesced into one request to the switch, decisions delivered in
batches (one signed POST, a result per event) and paid in one statement - with the single forms' guarantees."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.asyncio


def decision(order: dict[str, Any], event: str, status: str = "approved", **kw: Any) -> dict[str, Any]:
    return {"event_id": event, "rtp_id": order["id"], "switch_ref": order["switch_ref"], "status": status,
            "amount": order["amount"], "currency": "SYP", "reason": None, **kw}


async def test_concurrent_creates_share_requests_to_the_switch(system):
    sent: list[Any] = []
    real = system.gw._rtp_post

    async def recording(doc: dict[str, Any]) -> Any:
        sent.append(doc)
        return await real(doc)

    system.gw._rtp_post = recording
    replies = await asyncio.gather(*(system.fee_order(f"k-co-{i}", payer_account=f"09330000{i:02d}")
                                     for i in range(20)))
    assert {r.status_code for r in replies} == {201}
    assert sum(len(d["requests"]) if "requests" in d else 1 for d in sent) == 20
    assert len(sent) < 20 and any("requests" in d for d in sent)  # natural batching: fewer requests than creates
    refs = system.sql("SELECT switch_ref FROM orders ORDER BY id")
    assert len({r[0] for r in refs}) == 20
    switch_refs = dict(system.sql("SELECT rtp_id, switch_ref FROM rtp", dsn=system.sw_dsn))
    assert all(switch_refs[r.json()["id"]] == r.json()["switch_ref"] for r in replies)


async def test_a_refused_request_in_a_batch_fails_only_its_create(system):
    real = system.gw._rtp_post

    async def one_conflicts(doc: dict[str, Any]) -> Any:
        if "requests" in doc:  # the switch knows the first rtp_id with another amount: 409 for that one only
            await real({**doc["requests"][0], "amount": doc["requests"][0]["amount"] + 1})
        return await real(doc)

    system.gw._rtp_post = one_conflicts
    system.gw.cfg.rtp_flights = 1
    replies = await asyncio.gather(*(system.fee_order(f"k-rf-{i}", payer_account=f"09330000{i:02d}")
                                     for i in range(8)))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(502) >= 1 and codes.count(201) >= 6, codes
    refused = [r for r in replies if r.status_code == 502]
    assert all(r.json()["title"] == "switch refused the request to pay" for r in refused)
    assert system.sql("SELECT count(*) FROM orders")[0][0] == codes.count(201)
    await system.ledger_balanced()


async def test_batched_callbacks_pay_in_one_statement_with_a_result_per_event(system):
    await system.behaviour("timeout")
    orders = [(await system.fee_order(f"k-cb-{i}", payer_account=f"09331111{i:02d}")).json() for i in range(5)]
    events = [decision(orders[0], "EV-a"), decision(orders[1], "EV-b"), decision(orders[0], "EV-a"),
              decision(orders[2], "EV-c", status="declined", reason="insufficient funds"),
              {"event_id": "EV-bad", "rtp_id": orders[3]["id"], "amount": 1.5},
              decision({"id": "PO-unknown", "switch_ref": "SW0", "amount": 5}, "EV-u"),
              decision(orders[4], "EV-m", amount=orders[4]["amount"] + 1)]
    for e in events:
        e.setdefault("decided_at", system.clock().isoformat())
    body, headers = system.signed({"events": events})
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    got = resp.json()["results"]
    assert [(r["event_id"], r["status"], r.get("result")) for r in got] == [
        ("EV-a", 200, "paid"), ("EV-b", 200, "paid"), ("EV-a", 200, "duplicate"), ("EV-c", 200, "declined"),
        ("EV-bad", 422, None), ("EV-u", 404, None), ("EV-m", 200, "mismatch")]
    status = dict(system.sql("SELECT id, status FROM orders"))
    assert [status[o["id"]] for o in orders] == ["paid", "paid", "declined", "pending", "failed"]
    assert system.sql("SELECT count(*) FROM receipts")[0][0] == 2
    assert system.sql("SELECT count(*) FROM callbacks")[0][0] == 4
    # the same batch again: every applied event is a duplicate, nothing changes
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert [r.get("result") for r in resp.json()["results"]] == [
        "duplicate", "duplicate", "duplicate", "duplicate", None, None, "duplicate"]
    assert system.sql("SELECT count(*) FROM ledger_tx")[0][0] == 5 + 4  # 5 reserves, 2 commits, 2 aborts
    receipt = (await system.pay.get(f"/api/orders/{orders[0]['id']}/receipt")).json()
    assert orders[0]["id"] in receipt["payload"]
    await system.ledger_balanced()


async def test_a_batch_is_signed_as_a_whole(system):
    await system.behaviour("timeout")
    order = (await system.fee_order("k-sig")).json()
    body, headers = system.signed({"events": [decision(order, "EV-s", decided_at=system.clock().isoformat())]})
    forged = body.replace(b"EV-s", b"EV-t")
    resp = await system.pay.post("/api/switch/callbacks", content=forged, headers=headers)
    assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    for bad in ({"events": []}, {"events": "x"}, {"events": [], "more": 1}):
        body2, headers2 = system.signed(bad)
        assert (await system.pay.post("/api/switch/callbacks", content=body2, headers=headers2)).status_code == 422
    assert system.sql("SELECT count(*) FROM callbacks")[0][0] == 0
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert resp.json()["results"][0]["result"] == "paid"


async def test_the_switch_delivers_batches_end_to_end(system):
    system.switch.cfg.callback_batch = 4
    await system.behaviour("approve", **{"0933999901": "decline", "0933999902": "duplicate"})
    accounts = [f"09339999{i:02d}" for i in range(10)]
    replies = await asyncio.gather(*(system.fee_order(f"k-e2e-{i}", payer_account=a) for i, a in enumerate(accounts)))
    assert {r.status_code for r in replies} == {201}
    assert await system.dispatch() == {"delivered": 11, "failed": 0}
    status = sorted(s for (s,) in system.sql("SELECT status FROM orders"))
    assert status == ["declined"] + ["paid"] * 9
    assert system.sql("SELECT count(*) FROM receipts")[0][0] == 9
    assert system.sql("SELECT count(*) FROM notifications WHERE event = 'order.paid'")[0][0] == 9
    await system.ledger_balanced()


async def test_concurrent_creates_share_one_transaction_and_failures_write_nothing(system):
    await system.fee_order("k-g-before", payer_account="0933777700")
    before = (await system.fee_order("k-g-before", payer_account="0933777700")).json()
    bodies = [("k-g-0", {}), ("k-g-1", {}), ("k-g-badch", {"channel": "paypal"}),
              ("k-g-badsvc", {"service": "no-such-service"}), ("k-g-before", {"payer_account": "0933777700"}),
              ("k-g-before", {"service": "birth-certificate", "payer_account": "0933777700"}), ("k-g-2", {})]
    replies = await asyncio.gather(*(system.fee_order(k, **{"payer_account": f"09337777{i:02d}", **kw})
                                     for i, (k, kw) in enumerate(bodies)))
    assert [r.status_code for r in replies] == [201, 201, 422, 404, 201, 409, 201]
    assert replies[4].json() == before
    assert [r.json()["title"] for r in replies[2:4]] == ["unknown channel", "unknown service"]
    keys = {k for (k,) in system.sql("SELECT key FROM idempotency")}
    assert keys == {"k-g-before", "k-g-0", "k-g-1", "k-g-2"}  # the failed creates' claims were withdrawn
    assert system.sql("SELECT count(*) FROM orders")[0][0] == 4
    retry = await system.fee_order("k-g-badch", payer_account="0933777702")  # the key is free to use again
    assert retry.status_code == 201
    assert await system.dispatch() == {"delivered": 5, "failed": 0}
    await system.ledger_balanced()


async def test_a_failed_group_falls_back_to_one_transaction_per_create(system, monkeypatch):
    from payment import gateway

    real = gateway.OPEN_ORDERS
    monkeypatch.setattr(gateway, "OPEN_ORDERS", real.replace("SELECT id, 'reserve'", "SELECT id, 'reserve' || 1/0"))
    replies = await asyncio.gather(*(system.fee_order(f"k-fb-{i}", payer_account=f"09338888{i:02d}")
                                     for i in range(6)))
    assert {r.status_code for r in replies} == {201}
    assert system.sql("SELECT count(*) FROM orders")[0][0] == 6
    assert system.sql("SELECT count(*) FROM rtp", dsn=system.sw_dsn)[0][0] == 6  # the switch saw each request once
    again = await asyncio.gather(*(system.fee_order(f"k-fb-{i}", payer_account=f"09338888{i:02d}") for i in range(6)))
    assert [r.json() for r in again] == [r.json() for r in replies]
    assert (await system.dispatch())["delivered"] == 6
    await system.ledger_balanced()


async def test_a_group_looks_up_its_fees_at_once_outside_its_locks(system):
    """A slow catalog costs a group one look-up's time, not one per create (the creates wait behind the group)."""
    real = system.gw.cfg.fees
    started, release, both = asyncio.Event(), asyncio.Event(), asyncio.Event()
    inflight = 0
    calls: list[str] = []

    class Catalog:
        async def fee(self, service_id: str) -> Any:
            nonlocal inflight
            calls.append(service_id)
            if service_id == "passport-renewal":
                started.set()
                await release.wait()  # holds the first group while the others queue behind it
                return await real.fee(service_id)
            inflight += 1
            if inflight >= 2:
                both.set()
            try:
                await asyncio.wait_for(both.wait(), 5)  # only when the two look-ups are in flight together
            finally:
                inflight -= 1
            return await real.fee(service_id)

    system.gw.cfg.fees = Catalog()
    first = asyncio.create_task(system.fee_order("k-fl-1", "passport-renewal"))
    await asyncio.wait_for(started.wait(), 10)  # the first group is looking up its fee
    others = [asyncio.create_task(system.fee_order(f"k-fl-{i}", service, payer_account=f"09330000{i:02d}"))
              for i, service in ((2, "birth-certificate"), (3, "driving-licence"))]
    for _ in range(10_000):  # until both are queued behind the first group
        if len(system.gw._create_waiting) == 2:
            break
        await asyncio.sleep(0)
    assert len(system.gw._create_waiting) == 2
    release.set()
    replies = [await first, *[await t for t in others]]
    assert [r.status_code for r in replies] == [201, 201, 201], [r.text for r in replies]
    assert sorted(calls) == ["birth-certificate", "driving-licence", "passport-renewal"]  # no group fell back


async def test_a_switch_without_the_batch_form_gets_single_requests(system):
    import httpx

    real = system.gw._rtp_post
    sent: list[str] = []

    async def single_only(doc: dict[str, Any]) -> Any:
        sent.append("batch" if "requests" in doc else "single")
        if "requests" in doc:
            return httpx.Response(422, json={"title": "invalid request to pay", "detail": "rtp_id: field required"})
        return await real(doc)

    system.gw._rtp_post = single_only
    replies = await asyncio.gather(*(system.fee_order(f"k-so-{i}", payer_account=f"09330000{i:02d}")
                                     for i in range(12)))
    assert {r.status_code for r in replies} == {201}
    assert sent.count("batch") == 1 and sent.count("single") == 12  # refused once, then single form only
    await system.ledger_balanced()
