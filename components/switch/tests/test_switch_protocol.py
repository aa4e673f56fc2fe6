"""The switch simulator speaks the documented protocol: signed requests, idempotent request-to-pay, configurable
decisions, signed callbacks retried with backoff, status query, signed settlement CSV."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from govcloud_common import db, signing
from govcloud_common.testing import PgServer
from switch.app import CALLBACK_PATH, SwitchConfig, build_app

KEY, ADMIN = "k3y", "adm"
pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 7, 23, 50, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


class Gateway:
    """A stand-in participant: records callbacks, verifies their signatures, answers as told."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.received, self.answer = clock, [], 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        reason = signing.verify(KEY, request.headers.get(signing.HEADER), "POST", request.url.path, request.content,
                                self.clock().timestamp())
        assert reason is None and request.url.path == CALLBACK_PATH
        self.received.append(json.loads(request.content))
        return httpx.Response(self.answer, json={})


@pytest_asyncio.fixture
async def sim(pg_server: PgServer) -> AsyncIterator[Any]:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db.migrate("switch", conninfo=pg_server.dsn(name))
    clock = Clock()
    gw = Gateway(clock)
    payment = httpx.AsyncClient(transport=httpx.MockTransport(gw.handler), base_url="http://payment")
    app = build_app(SwitchConfig(conninfo=pg_server.dsn(name), key=KEY, admin_token=ADMIN, payment=payment,
                                 clock=clock))
    await app.state.switch.open()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://switch")

    class Sim:
        pass

    s = Sim()
    s.client, s.gw, s.clock, s.switch = client, gw, clock, app.state.switch

    async def call(method: str, path: str, doc: Any = None, key: str = KEY) -> httpx.Response:
        body = json.dumps(doc).encode() if doc is not None else b""
        headers = {signing.HEADER: signing.sign(key, method, path, body, clock().timestamp()),
                   "content-type": "application/json"}
        return await client.request(method, path, content=body, headers=headers)

    s.call = call
    try:
        yield s
    finally:
        await client.aclose()
        await payment.aclose()
        await app.state.switch.close()
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rtp(rtp_id: str, account: str = "0933000001", amount: int = 5000, **kw: Any) -> dict[str, Any]:
    return {"rtp_id": rtp_id, "amount": amount, "currency": "SYP", "payee": "service:x",
            "channel": {"kind": "wallet", "provider": "mtn-cash", "account": account},
            "expires_at": "2026-12-08T01:20:00+00:00", **kw}


async def test_requests_must_be_signed(sim):
    assert (await sim.client.post("/v1/rtp", json=rtp("a"))).status_code == 401
    resp = await sim.call("POST", "/v1/rtp", rtp("a"), key="wrong")
    assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    assert (await sim.client.get("/v1/rtp/a")).status_code == 401
    assert (await sim.client.put("/v1/sim/behaviour", json={"default": "decline"})).status_code == 401


async def test_request_to_pay_is_idempotent_on_rtp_id(sim):
    first = await sim.call("POST", "/v1/rtp", rtp("r1"))
    assert first.status_code == 202 and first.json()["status"] == "pending"
    again = await sim.call("POST", "/v1/rtp", rtp("r1"))
    assert again.status_code == 200 and again.json()["switch_ref"] == first.json()["switch_ref"]
    assert (await sim.call("POST", "/v1/rtp", rtp("r1", amount=6000))).status_code == 409
    assert (await sim.call("POST", "/v1/rtp", rtp("r2", amount=1.5))).status_code == 422
    assert (await sim.call("POST", "/v1/rtp", rtp("r3", amount=-1))).status_code == 422
    assert await sim.switch.dispatch_due() == {"delivered": 1, "failed": 0}
    assert [c["rtp_id"] for c in sim.gw.received] == ["r1"]


async def test_behaviours_approve_decline_timeout_duplicate(sim):
    await sim.client.put("/v1/sim/behaviour", headers={"authorization": f"Bearer {ADMIN}"},
                         json={"default": "approve", "accounts": {"d": "decline", "t": "timeout", "u": "duplicate"}})
    for rid, account in [("a", "0933"), ("d", "d"), ("t", "t"), ("u", "u")]:
        assert (await sim.call("POST", "/v1/rtp", rtp(rid, account=account))).status_code == 202
    expired = rtp("e", expires_at="2026-12-07T23:00:00+00:00")
    assert (await sim.call("POST", "/v1/rtp", expired)).status_code == 202
    assert await sim.switch.dispatch_due() == {"delivered": 5, "failed": 0}
    got = [(c["rtp_id"], c["status"]) for c in sim.gw.received]
    assert sorted(got) == [("a", "approved"), ("d", "declined"), ("e", "declined"), ("u", "approved"),
                           ("u", "approved")]
    dup = [c for c in sim.gw.received if c["rtp_id"] == "u"]
    assert dup[0]["event_id"] == dup[1]["event_id"]
    status = {r: (await sim.call("GET", f"/v1/rtp/{r}")).json()["status"] for r in "adtue"}
    assert status == {"a": "approved", "d": "declined", "t": "pending", "u": "approved", "e": "declined"}
    assert (await sim.call("GET", "/v1/rtp/none")).status_code == 404
    assert await sim.switch.dispatch_due() == {"delivered": 0, "failed": 0}


async def test_undelivered_callbacks_back_off_and_are_retried(sim):
    sim.gw.answer = 503
    await sim.call("POST", "/v1/rtp", rtp("b1"))
    assert await sim.switch.dispatch_due() == {"delivered": 0, "failed": 1}
    assert await sim.switch.dispatch_due() == {"delivered": 0, "failed": 0}  # not due yet: 1 s backoff
    sim.clock.t += timedelta(seconds=1)
    assert await sim.switch.dispatch_due() == {"delivered": 0, "failed": 1}
    sim.clock.t += timedelta(seconds=1)
    assert await sim.switch.dispatch_due() == {"delivered": 0, "failed": 0}  # now 2 s
    sim.gw.answer = 200
    sim.clock.t += timedelta(seconds=1)
    assert await sim.switch.dispatch_due() == {"delivered": 1, "failed": 0}
    assert len(sim.gw.received) == 3


async def test_settlement_file_is_signed_csv_of_the_days_approvals(sim):
    await sim.call("POST", "/v1/rtp", rtp("s1", amount=700))
    await sim.client.put("/v1/sim/behaviour", json={"default": "decline"}, headers={"authorization": f"Bearer {ADMIN}"})
    await sim.call("POST", "/v1/rtp", rtp("s2"))
    sim.clock.t += timedelta(minutes=15)  # past midnight: the next day's file
    await sim.client.put("/v1/sim/behaviour", json={"default": "approve"}, headers={"authorization": f"Bearer {ADMIN}"})
    await sim.call("POST", "/v1/rtp", rtp("s3", amount=900))
    resp = await sim.call("GET", "/v1/settlements/2026-12-07")
    assert resp.headers["content-type"].startswith("text/csv")
    assert signing.verify(KEY, resp.headers[signing.HEADER], "GET", "/v1/settlements/2026-12-07", resp.content,
                          sim.clock().timestamp()) is None
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["rtp_id"], r["amount"], r["status"]) for r in rows] == [("s1", "700", "approved")]
    nxt = list(csv.DictReader(io.StringIO((await sim.call("GET", "/v1/settlements/2026-12-08")).text)))
    assert [r["rtp_id"] for r in nxt] == ["s3"]
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert (await sim.client.patch("/v1/sim/rtp/s3", json={"settled_amount": 1}, headers=admin)).status_code == 204
    nxt = list(csv.DictReader(io.StringIO((await sim.call("GET", "/v1/settlements/2026-12-08")).text)))
    assert nxt[0]["amount"] == "1"
    assert (await sim.client.patch("/v1/sim/rtp/zz", json={}, headers=admin)).status_code == 404


async def test_signatures_expire(sim):
    body = json.dumps(rtp("x")).encode()
    old = signing.sign(KEY, "POST", "/v1/rtp", body, (sim.clock() - timedelta(minutes=6)).timestamp())
    resp = await sim.client.post("/v1/rtp", content=body, headers={signing.HEADER: old})
    assert resp.status_code == 401 and resp.json()["detail"] == "stale signature"


async def test_request_to_pay_batch_form_answers_each_request(sim):
    assert (await sim.call("POST", "/v1/rtp", rtp("b0"))).status_code == 202
    batch = {"requests": [rtp("b1"), rtp("b0"), rtp("b0", amount=1), rtp("b2", amount=1.5), rtp("b1"),
                          rtp("b3", expires_at="2026-12-07T23:00:00+00:00")]}
    resp = await sim.call("POST", "/v1/rtp", batch)
    assert resp.status_code == 200, resp.text
    got = resp.json()["results"]
    assert [r["code"] for r in got] == [202, 200, 409, 422, 200, 202]
    assert got[0]["switch_ref"] == got[4]["switch_ref"] and got[0]["status"] == "pending"
    assert got[3]["rtp_id"] == "b2" and got[2]["rtp_id"] == "b0"
    assert (await sim.call("GET", "/v1/rtp/b3")).json()["status"] == "declined"
    assert (await sim.call("GET", "/v1/rtp/b2")).status_code == 404
    for bad in ({"requests": []}, {"requests": [rtp("x")], "extra": 1}, {"requests": "no"}):
        assert (await sim.call("POST", "/v1/rtp", bad)).status_code == 422
    assert (await sim.call("POST", "/v1/rtp", batch, key="wrong")).status_code == 401
    assert await sim.switch.dispatch_due() == {"delivered": 3, "failed": 0}


async def test_callbacks_go_out_in_signed_batches_and_refused_events_are_retried(sim):
    sim.switch.cfg.callback_batch = 3
    batches: list[list[dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert signing.verify(KEY, request.headers.get(signing.HEADER), "POST", request.url.path, request.content,
                              sim.clock().timestamp()) is None
        events = json.loads(request.content)["events"]
        batches.append(events)
        return httpx.Response(200, json={"results": [{"event_id": e["event_id"], "status": 404 if e["rtp_id"] == "c2"
                                                      else 200} for e in events]})

    sim.switch.cfg.payment = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://payment")
    await sim.client.put("/v1/sim/behaviour", headers={"authorization": f"Bearer {ADMIN}"},
                         json={"default": "approve", "accounts": {"u": "duplicate"}})
    await sim.call("POST", "/v1/rtp", {"requests": [rtp(f"c{i}") for i in range(5)] + [rtp("cu", account="u")]})
    assert await sim.switch.dispatch_due() == {"delivered": 6, "failed": 1}
    ids = [[e["rtp_id"] for e in b] for b in batches]
    assert sorted(len(b) for b in ids) == [1, 3, 3]  # 6 distinct events in 2 batches, then the duplicate's copy
    assert ids[-1] == ["cu"] and all(len({e["event_id"] for e in b}) == len(b) for b in batches)
    sim.clock.t += timedelta(seconds=1)
    batches.clear()
    assert await sim.switch.dispatch_due() == {"delivered": 0, "failed": 1}  # only the refused one again
    assert [[e["rtp_id"] for e in b] for b in batches] == [["c2"]]
    await sim.switch.cfg.payment.aclose()
