"""End-to-end flows through the in-process switch: fee and bill payment, receipts, decline, cancel, expiry."""

from __future__ import annotations

import pytest
from payment import ledger
from payment.receipts import InvalidReceipt, local_chain, verify_receipt

pytestmark = pytest.mark.asyncio


async def test_fee_flow_ends_in_a_verified_signed_receipt(system):
    resp = await system.fee_order("k-fee-1")
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["status"] == "pending" and order["amount"] == system.fees["passport-renewal"]
    assert order["switch_ref"].startswith("SW") and order["currency"] == "SYP"
    assert (await system.pay.get(f"/api/orders/{order['id']}/receipt")).status_code == 404
    await system.ledger_balanced()

    assert await system.dispatch() == {"delivered": 1, "failed": 0}
    paid = (await system.pay.get(f"/api/orders/{order['id']}")).json()
    assert paid["status"] == "paid" and paid["closed_at"]

    receipt = (await system.pay.get(f"/api/orders/{order['id']}/receipt")).json()
    fields = verify_receipt(receipt, system.root_pem)
    assert fields["order_id"] == order["id"] and fields["amount"] == 25_000
    assert fields["switch_ref"] == paid["switch_ref"]
    assert fields["payer_account"].endswith("3456") and "0933123456" not in receipt["payload"]
    assert len(receipt["chain"]) == 3

    forged = {**receipt, "payload": receipt["payload"].replace("25000", "2500")}
    with pytest.raises(InvalidReceipt, match="signature"):
        verify_receipt(forged, system.root_pem)
    _, other_root = local_chain("someone else")
    from cryptography.hazmat.primitives import serialization
    with pytest.raises(InvalidReceipt):
        verify_receipt(receipt, other_root.public_bytes(serialization.Encoding.PEM).decode())

    check = await system.ledger_balanced()
    assert check["transactions"] == 2  # reserve + commit
    async with system.gw.pool.connection() as conn:
        assert await ledger.balance(conn, "payee:service:passport-renewal") == -25_000
        assert await ledger.balance(conn, ledger.order_account(order["id"])) == 0
        assert await ledger.balance(conn, ledger.PENDING) == 0
        assert await ledger.balance(conn, ledger.RECEIVABLE) == 25_000


async def test_bill_inquiry_and_payment(system):
    bills = [{"reference": "EL-1002003", "customer": "Damascus, Mezzeh 14", "amount_due": 48_250},
             {"reference": "WA-77", "customer": "Aleppo 3", "amount_due": 9_900, "due_date": "2026-12-31"},
             {"reference": "TE-5550001", "customer": "Homs 7", "amount_due": 15_000}]
    resp = await system.pay.put("/api/admin/bills", json=bills, headers=system.admin)
    assert resp.json() == {"loaded": 3}
    assert (await system.pay.put("/api/admin/bills", json=bills)).status_code == 401
    billers = {b["prefix"]: b["kind"] for b in (await system.pay.get("/api/billers")).json()}
    assert billers == {"EL": "electricity", "WA": "water", "TE": "telecom"}

    inquiry = (await system.pay.get("/api/bills/EL-1002003")).json()
    assert inquiry["amount_due"] == 48_250 and inquiry["status"] == "due" and inquiry["biller"]["id"] == "electricity"
    missing = await system.pay.get("/api/bills/EL-999")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert (await system.pay.get("/api/bills/ZZ-1")).json()["title"] == "unknown biller"

    order = (await system.order("k-bill-1", kind="bill", bill_reference="EL-1002003", channel="cbs",
                                payer_account="SY0012345678")).json()
    assert order["amount"] == 48_250 and order["payee"] == "biller:electricity"
    twin = await system.order("k-bill-2", kind="bill", bill_reference="EL-1002003")
    assert twin.status_code == 409  # one open order per bill
    await system.dispatch()
    assert (await system.pay.get("/api/bills/EL-1002003")).json()["status"] == "paid"
    again = await system.order("k-bill-3", kind="bill", bill_reference="EL-1002003")
    assert again.status_code == 409 and again.json()["title"] == "bill already paid"
    receipt = (await system.pay.get(f"/api/orders/{order['id']}/receipt")).json()
    assert verify_receipt(receipt, system.root_pem)["bill_reference"] == "EL-1002003"
    await system.ledger_balanced()


async def test_channels_are_wallets_and_banks_and_configurable(system):
    kinds = {c["id"]: c["kind"] for c in (await system.pay.get("/api/channels")).json()}
    assert kinds["mtn-cash"] == "wallet" and kinds["cbs"] == "bank"
    resp = await system.pay.put("/api/admin/channels/mtn-cash", headers=system.admin,
                                json={"kind": "wallet", "name": "MTN", "enabled": False})
    assert resp.status_code == 200
    refused = await system.fee_order("k-ch-1")
    assert refused.status_code == 422 and refused.json()["title"] == "unknown channel"
    ok = await system.fee_order("k-ch-2", channel="syriatel-cash")
    assert ok.status_code == 201


async def test_declined_payment_releases_the_reservation(system):
    await system.behaviour("approve", **{"0944000000": "decline"})
    order = (await system.fee_order("k-dec", payer_account="0944000000")).json()
    await system.dispatch()
    after = (await system.pay.get(f"/api/orders/{order['id']}")).json()
    assert after["status"] == "declined" and after["reason"] == "insufficient funds"
    assert (await system.pay.get(f"/api/orders/{order['id']}/receipt")).status_code == 404
    check = await system.ledger_balanced()
    assert check["transactions"] == 2  # reserve + abort
    async with system.gw.pool.connection() as conn:
        assert await ledger.balance(conn, ledger.PENDING) == 0


async def test_cancel_aborts_and_late_approval_is_flagged(system):
    await system.behaviour("timeout")
    order = (await system.fee_order("k-cancel")).json()
    resp = await system.pay.post(f"/api/orders/{order['id']}/cancel")
    assert resp.json()["status"] == "cancelled"
    assert (await system.pay.post(f"/api/orders/{order['id']}/cancel")).status_code == 200  # idempotent
    status = await system.gw.query_switch(order["id"])
    assert status["status"] == "pending"
    await system.ledger_balanced()


async def test_unpaid_orders_expire_after_90_minutes(system):
    await system.behaviour("timeout")
    first = (await system.fee_order("k-exp-1")).json()
    system.clock.advance(minutes=30)
    second = (await system.fee_order("k-exp-2", service="birth-certificate")).json()
    assert first["expires_at"] == "2026-12-07T11:30:00+00:00"
    assert await system.dispatch() == {"delivered": 0, "failed": 0}  # the switch never answers

    system.clock.advance(minutes=59)  # 89 minutes after the first
    assert await system.gw.expire_due() == 0
    system.clock.advance(minutes=1)
    assert await system.gw.expire_due() == 1
    assert (await system.pay.get(f"/api/orders/{first['id']}")).json()["status"] == "expired"
    assert (await system.pay.get(f"/api/orders/{second['id']}")).json()["status"] == "pending"
    system.clock.advance(minutes=30)
    resp = await system.pay.post("/api/admin/expire", headers=system.admin)
    assert resp.json() == {"expired": 1}
    await system.ledger_balanced()
    async with system.gw.pool.connection() as conn:
        assert await ledger.balance(conn, ledger.PENDING) == 0

    # the payer approves on the switch after expiry: the order stays expired, the late decision is recorded
    body, headers = system.signed({"event_id": "EV-late", "rtp_id": first["id"], "switch_ref": first["switch_ref"],
                                   "status": "approved", "amount": first["amount"], "currency": "SYP",
                                   "decided_at": system.clock().isoformat()})
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert resp.json()["result"] == "ignored"
    assert system.sql("SELECT status, late_status FROM orders WHERE id = %s", first["id"]) == [("expired", "approved")]
    await system.ledger_balanced()


async def test_callback_delivered_late_counts_by_the_switch_decision_time(system):
    in_time = (await system.fee_order("k-exp-3")).json()  # approved at once, delivered 91 minutes later
    await system.behaviour("timeout")
    too_late = (await system.fee_order("k-exp-4", service="birth-certificate")).json()
    system.clock.advance(minutes=91)
    assert await system.dispatch() == {"delivered": 1, "failed": 0}
    assert (await system.pay.get(f"/api/orders/{in_time['id']}")).json()["status"] == "paid"
    body, headers = system.signed({"event_id": "EV-x", "rtp_id": too_late["id"], "switch_ref": too_late["switch_ref"],
                                   "status": "approved", "amount": too_late["amount"], "currency": "SYP",
                                   "decided_at": system.clock().isoformat()})
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert resp.json()["result"] == "expired"
    assert system.sql("SELECT status, late_status FROM orders WHERE id = %s", too_late["id"]) == [
        ("expired", "approved")]
    await system.ledger_balanced()


async def test_a_lost_callback_is_recovered_by_a_status_query(system):
    order = (await system.fee_order("k-lost")).json()
    async with system.switch.pool.connection() as conn:  # the switch's callback never arrives
        await conn.execute("UPDATE outbox SET delivered_at = now()")
    assert await system.gw.sync_overdue() == {"asked": 0, "applied": 0}  # not overdue yet
    system.clock.advance(minutes=2)
    assert await system.gw.sync_overdue() == {"asked": 1, "applied": 1}
    assert (await system.pay.get(f"/api/orders/{order['id']}")).json()["status"] == "paid"
    receipt = (await system.pay.get(f"/api/orders/{order['id']}/receipt")).json()
    assert verify_receipt(receipt, system.root_pem)["order_id"] == order["id"]
    assert await system.gw.sync_overdue() == {"asked": 0, "applied": 0}  # no longer pending

    # still undecided at the switch: asked again only after another interval
    await system.behaviour("timeout")
    await system.fee_order("k-undecided")
    system.clock.advance(minutes=2)
    assert await system.gw.sync_overdue() == {"asked": 1, "applied": 0}
    system.clock.advance(minutes=1)
    assert await system.gw.sync_overdue() == {"asked": 0, "applied": 0}
    system.clock.advance(minutes=1)
    assert (await system.pay.post("/api/admin/sync-overdue", headers=system.admin)).json() == {"asked": 1,
                                                                                               "applied": 0}
    await system.ledger_balanced()
