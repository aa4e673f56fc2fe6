"""Circuit breaker per provider: opens after consecutive failures, half-opens after the cool-down (one trial),
closes on success; timeouts count as failures. Time is a controlled clock, not sleeps."""

from __future__ import annotations

import pytest
from bus.breaker import Breakers, CircuitOpen

PERSON = "/r1/cra/population/persons/persons/01010000001"


def test_state_machine() -> None:
    now = [0.0]
    b = Breakers(threshold=2, reset_after=10, clock=lambda: now[0]).get("p")
    b.before(); b.failure()  # noqa: E702
    b.before(); b.failure()  # noqa: E702
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        b.before()
    now[0] = 10.0
    b.before()  # the trial
    assert b.state == "half-open"
    with pytest.raises(CircuitOpen):  # only one trial at a time
        b.before()
    b.failure()
    assert b.state == "open" and b.opened_at == 10.0
    now[0] = 20.0
    b.before()
    b.success()
    assert b.state == "closed" and b.failures == 0


async def fault(harness, **kw: object) -> None:
    r = await harness.admin.put(f"{harness.bodysystems.url}/_sim/faults", json={"system": "cra/population", **kw})
    assert r.status_code == 200


@pytest.mark.asyncio
async def test_breaker_opens_half_opens_and_closes_through_the_bus(harness) -> None:
    await fault(harness, status=503)
    async with harness.client("portal") as c:
        failures = [(await c.get(PERSON)).status_code for _ in range(3)]
        assert failures == [503, 503, 503]  # the provider's own 503s, passed through
        assert harness.bus.breakers.get("cra/population").state == "open"
        opened = await c.get(PERSON)
        assert opened.status_code == 503 and opened.json()["type"] == "urn:govcloud:bus:circuit-open"
        other = await c.get("/r1/mola/landregistry/parcels/GetParcel", params={"parcelId": "DMS-1001"})
        assert other.status_code == 200  # per provider: the land registry is unaffected

        harness.clock.now += 5.0  # cool-down over: half-open, the trial fails -> open again
        trial = await c.get(PERSON)
        assert trial.status_code == 503 and trial.json().get("type") != "urn:govcloud:bus:circuit-open"
        assert harness.bus.breakers.get("cra/population").state == "open"

        await fault(harness, status=None)
        harness.clock.now += 5.0
        recovered = await c.get(PERSON)
        assert recovered.status_code == 200
        assert harness.bus.breakers.get("cra/population").state == "closed"
    snapshot = (await harness.admin.get("/admin/breakers")).json()
    assert snapshot["cra/population"] == {"state": "closed", "failures": 0}


@pytest.mark.asyncio
async def test_timeout_is_504_and_counts_as_failure(harness) -> None:
    r = await harness.admin.put("/admin/services/cra/population/persons", json={
        "protocol": "rest", "timeout_ms": 50})
    assert r.status_code == 200
    await fault(harness, delay_ms=1000)
    async with harness.client("portal") as c:
        r = await c.get(PERSON)
    assert r.status_code == 504
    assert r.json()["type"] == "urn:govcloud:bus:provider-timeout"
    assert harness.bus.breakers.get("cra/population").failures == 1


@pytest.mark.asyncio
async def test_unreachable_provider_is_502(harness) -> None:
    r = await harness.admin.put("/admin/systems/cra/population", json={"base_url": "http://127.0.0.1:9"})
    assert r.status_code == 204
    async with harness.client("portal") as c:
        r = await c.get(PERSON)
    assert r.status_code == 502 and r.json()["type"] == "urn:govcloud:bus:provider-unreachable"
