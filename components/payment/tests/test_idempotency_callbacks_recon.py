"""Idempotency, callback authenticity and duplicates, bad input, reconciliation against the settlement file."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.asyncio


def counts(system) -> dict[str, int]:
    tables = ("orders", "idempotency", "ledger_tx", "callbacks", "receipts")
    return {t: system.sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def switch_rtps(system) -> int:
    return system.sql("SELECT count(*) FROM rtp", dsn=system.sw_dsn)[0][0]


async def test_same_key_same_body_gives_the_same_response(system):
    first = await system.fee_order("k-idem")
    again = await system.fee_order("k-idem")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    await system.dispatch()
    third = await system.fee_order("k-idem")  # even after the order was paid: the create's response, not the state
    assert third.json() == first.json() and third.json()["status"] == "pending"
    assert counts(system)["orders"] == 1 and switch_rtps(system) == 1
    await system.ledger_balanced()


async def test_same_key_different_body_is_409_and_writes_nothing(system):
    await system.fee_order("k-idem-2")
    before = counts(system)
    clash = await system.fee_order("k-idem-2", service="birth-certificate")
    assert clash.status_code == 409 and clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["title"] == "Idempotency-Key reused with a different body"
    assert counts(system) == before
    missing = await system.pay.post("/api/orders", json={"kind": "fee", "service_id": "passport-renewal",
                                                        "channel": "cbs", "payer_account": "SY01234567"})
    assert missing.status_code == 400


async def test_concurrent_duplicates_create_one_order(system):
    replies = await asyncio.gather(*(system.fee_order("k-race") for _ in range(12)))
    assert {r.status_code for r in replies} == {201}
    assert len({r.text for r in replies}) == 1
    assert counts(system)["orders"] == 1 and counts(system)["idempotency"] == 1 and switch_rtps(system) == 1
    # and concurrent distinct keys each get their own order
    distinct = await asyncio.gather(*(system.fee_order(f"k-many-{i}") for i in range(10)))
    assert len({r.json()["id"] for r in distinct}) == 10
    assert (await system.dispatch())["delivered"] == 11
    await system.ledger_balanced()
    assert system.sql("SELECT count(*) FROM orders WHERE status = 'paid'")[0][0] == 11


async def test_concurrent_different_bodies_on_one_key_one_wins(system):
    bodies = ["passport-renewal", "birth-certificate"] * 4
    replies = await asyncio.gather(*(system.fee_order("k-clash", service=s) for s in bodies))
    codes = sorted(r.status_code for r in replies)
    winner = next(r for r in replies if r.status_code == 201).json()["service_id"]
    assert codes == [201] * 4 + [409] * 4
    assert all(r.json()["service_id"] == winner for r in replies if r.status_code == 201)
    assert counts(system)["orders"] == 1


async def test_duplicate_callbacks_are_harmless(system):
    await system.behaviour("duplicate")
    order = (await system.fee_order("k-dup")).json()
    assert await system.dispatch() == {"delivered": 2, "failed": 0}
    assert system.sql("SELECT result FROM callbacks") == [("paid",)]
    rows = system.sql("SELECT kind FROM ledger_tx WHERE order_id = %s ORDER BY id", order["id"])
    assert rows == [("reserve",), ("commit",)]
    # a replayed copy of the delivered callback, and a fresh event restating the decision
    payload = system.sql("SELECT payload FROM callbacks")[0][0]
    body, headers = system.signed(payload)
    replay = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert replay.json() == {"result": "duplicate", "order": order["id"]}
    body, headers = system.signed({**payload, "event_id": "EV-restated"})
    assert (await system.pay.post("/api/switch/callbacks", content=body, headers=headers)).json()["result"] == "ignored"
    body, headers = system.signed({**payload, "event_id": "EV-contrary", "status": "declined"})
    assert (await system.pay.post("/api/switch/callbacks", content=body, headers=headers)).json()["result"] == "ignored"
    assert system.sql("SELECT status, late_status FROM orders") == [("paid", "declined")]
    assert counts(system)["receipts"] == 1
    await system.ledger_balanced()


async def test_forged_and_stale_callbacks_are_refused_and_write_nothing(system):
    await system.behaviour("timeout")
    order = (await system.fee_order("k-forge")).json()
    before = counts(system)
    payload = {"event_id": "EV-forged", "rtp_id": order["id"], "switch_ref": order["switch_ref"], "status": "approved",
               "amount": order["amount"], "currency": "SYP", "decided_at": system.clock().isoformat()}
    attempts = [system.signed(payload, key="not-the-key"),
                system.signed(payload, at=system.clock().replace(hour=9)),          # an hour old: a replay
                system.signed(payload, path="/api/other")]
    body, headers = system.signed(payload)
    attempts.append((body.replace(b"approved", b"declined"), headers))             # body altered after signing
    attempts.append((body, {"content-type": "application/json"}))                   # unsigned
    attempts.append((body, {**headers, "X-Switch-Signature": "t=abc,v1=zz"}))       # malformed
    for body_, headers_ in attempts:
        resp = await system.pay.post("/api/switch/callbacks", content=body_, headers=headers_)
        assert resp.status_code == 401, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
    assert counts(system) == before
    assert (await system.pay.get(f"/api/orders/{order['id']}")).json()["status"] == "pending"
    # the genuine one still goes through
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert resp.json()["result"] == "paid"
    await system.ledger_balanced()


async def test_callback_for_an_unknown_order_is_retried_by_the_switch(system):
    body, headers = system.signed({"event_id": "EV-u", "rtp_id": "PO-nope", "switch_ref": "SW1", "status": "approved",
                                   "amount": 5, "currency": "SYP", "decided_at": system.clock().isoformat()})
    resp = await system.pay.post("/api/switch/callbacks", content=body, headers=headers)
    assert resp.status_code == 404 and counts(system)["callbacks"] == 0


@pytest.mark.parametrize("body, status, title", [
    ({"kind": "fee", "service_id": "no-such-service"}, 404, "unknown service"),
    ({"kind": "fee", "service_id": "passport-renewal", "channel": "paypal"}, 422, "unknown channel"),
    ({"kind": "bill", "bill_reference": "EL-404"}, 404, "unknown bill"),
    ({"kind": "bill", "bill_reference": "el 404"}, 422, "invalid order"),
    ({"kind": "fee", "service_id": "passport-renewal", "amount": 12.5}, 422, "invalid order"),
    ({"kind": "fee", "service_id": "passport-renewal", "payer_account": "1"}, 422, "invalid order"),
    ({"kind": "fee"}, 422, "invalid order"),
    ({"kind": "tip", "service_id": "passport-renewal"}, 422, "invalid order"),
])
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(system, body, status, title):
    before = counts(system)
    resp = await system.order("k-bad", **body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json" and resp.json()["title"] == title
    assert counts(system) == before and switch_rtps(system) == 0


async def test_malformed_json_and_bad_bill_amounts(system):
    resp = await system.pay.post("/api/orders", content=b"{not json", headers={"Idempotency-Key": "k"})
    assert resp.status_code == 422 and resp.json()["title"] == "malformed JSON"
    for amount in (12.5, -3, 0, "100", None):
        resp = await system.pay.put("/api/admin/bills", headers=system.admin,
                                    json=[{"reference": "EL-1", "customer": "x", "amount_due": amount}])
        assert resp.status_code == 422, amount
        assert resp.headers["content-type"] == "application/problem+json"
    assert system.sql("SELECT count(*) FROM bills")[0][0] == 0


async def test_switch_unavailable_is_503_and_a_retry_is_safe(system):
    real = system.gw.cfg.switch
    import httpx

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("switch down", request=request)

    system.gw.cfg.switch = httpx.AsyncClient(transport=httpx.MockTransport(down), base_url="http://switch")
    resp = await system.fee_order("k-retry")
    assert resp.status_code == 503 and counts(system)["orders"] == 0 and counts(system)["idempotency"] == 0
    await system.gw.cfg.switch.aclose()
    system.gw.cfg.switch = real
    resp = await system.fee_order("k-retry")
    assert resp.status_code == 201
    await system.dispatch()
    assert (await system.pay.get(f"/api/orders/{resp.json()['id']}")).json()["status"] == "paid"
    await system.ledger_balanced()


async def test_reconciliation_finds_missing_and_mismatched_transactions(system):
    paid = []
    for i, service in enumerate(["passport-renewal", "birth-certificate", "driving-licence", "passport-renewal"]):
        paid.append((await system.fee_order(f"k-rec-{i}", service=service)).json())
    await system.dispatch()
    # the switch left one out of its file and settled another for a different amount
    admin = system.admin
    assert (await system.sw.patch(f"/v1/sim/rtp/{paid[1]['id']}", json={"in_settlement": False},
                                  headers=admin)).status_code == 204
    assert (await system.sw.patch(f"/v1/sim/rtp/{paid[2]['id']}", json={"settled_amount": 119_000},
                                  headers=admin)).status_code == 204
    # and the switch approved an order that expired here before the approval came
    await system.behaviour("timeout")
    late = (await system.fee_order("k-rec-late")).json()
    system.clock.advance(minutes=91)
    assert await system.gw.expire_due() == 1
    from switch.app import Switch
    sw: Switch = system.switch
    async with sw.pool.connection() as conn:  # the payer's approval lands on the switch after our expiry
        await conn.execute("UPDATE rtp SET status = 'approved', decided_at = %s WHERE rtp_id = %s",
                           (system.clock(), late["id"]))

    resp = await system.pay.post("/api/reconciliations", json={"date": "2026-12-07"}, headers=admin)
    assert resp.status_code == 201, resp.text
    report = resp.json()
    assert report["matched"] == 2 and report["settlement_rows"] == 4
    found = {(m["kind"], m["order_id"]) for m in report["mismatches"]}
    assert found == {("missing_in_settlement", paid[1]["id"]), ("amount_mismatch", paid[2]["id"]),
                     ("missing_in_ledger", late["id"])}
    amounts = {m["order_id"]: (m["ledger_amount"], m["switch_amount"]) for m in report["mismatches"]}
    assert amounts[paid[2]["id"]] == (120_000, 119_000)
    assert amounts[late["id"]] == (None, late["amount"])
    stored = (await system.pay.get(f"/api/reconciliations/{report['id']}", headers=admin)).json()
    assert stored["mismatches"] == report["mismatches"]
    assert (await system.pay.post("/api/reconciliations", json={"date": "2026-12-07"})).status_code == 401
    await system.ledger_balanced()


async def test_reconciliation_refuses_a_settlement_file_with_a_bad_signature(system):
    await system.fee_order("k-rs")
    await system.dispatch()
    system.gw.cfg.key = "a-different-key"  # the file's signature no longer verifies (nor do our requests)
    resp = await system.pay.post("/api/reconciliations", json={"date": "2026-12-07"}, headers=system.admin)
    assert resp.status_code == 502
    assert system.sql("SELECT count(*) FROM reconciliations")[0][0] == 0


async def test_reconciliation_against_an_uploaded_settlement_file(system):
    paid = [(await system.fee_order(f"k-up-{i}")).json() for i in range(3)]
    await system.dispatch()
    header = "switch_ref,rtp_id,amount,currency,status,decided_at\n"
    line = "{switch_ref},{id},{amount},SYP,approved,2026-12-07T10:00:00+00:00\n"
    text = header + line.format(**paid[0]) + line.format(**{**paid[1], "amount": 1}) + line.format(**paid[0])
    resp = await system.pay.post("/api/reconciliations", json={"date": "2026-12-07", "settlement_csv": text},
                                 headers=system.admin)
    assert resp.status_code == 201, resp.text
    report = resp.json()
    assert report["source"] == "uploaded" and report["settlement_rows"] == 3 and report["matched"] == 1
    assert [m["order_id"] for m in report["matched_lines"]] == [paid[0]["id"]]
    found = {(m["kind"], m["order_id"], m["line"]) for m in report["mismatches"]}
    assert found == {("amount_mismatch", paid[1]["id"], 3), ("duplicate_in_settlement", paid[0]["id"], 4),
                     ("missing_in_settlement", paid[2]["id"], None)}
    stored = (await system.pay.get(f"/api/reconciliations/{report['id']}", headers=system.admin)).json()
    assert stored["source"] == "uploaded" and stored["settlement_sha256"] == report["settlement_sha256"]


async def test_a_malformed_uploaded_settlement_file_is_refused_naming_the_line(system):
    header = "switch_ref,rtp_id,amount,currency,status,decided_at\n"
    for text, needle in [(header + "SW1,PO1,12.5,SYP,approved,x\n", "line 2: amount '12.5'"),
                         ("ref,order,amount\nSW1,PO1,5\n", "header lacks column(s) switch_ref, rtp_id"),
                         (header + "SW1,PO1,5,USD,approved,x\n", "line 2: currency 'USD'")]:
        resp = await system.pay.post("/api/reconciliations", json={"date": "2026-12-07", "settlement_csv": text},
                                     headers=system.admin)
        assert resp.status_code == 422, resp.text
        assert needle in resp.json()["detail"], resp.json()
    assert system.sql("SELECT count(*) FROM reconciliations")[0][0] == 0
