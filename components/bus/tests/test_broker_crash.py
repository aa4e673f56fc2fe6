"""The broker crashes (kill -9) while messages wait for a provider that is down: after nats-server restarts on
its store, every accepted message is delivered, once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import NatsServer, start_nats

pytestmark = pytest.mark.asyncio


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:  # this module's own broker, to kill
    server = start_nats(tmp_path / "store")
    holder = {"server": server}
    server.holder = holder  # type: ignore[attr-defined]
    yield server
    holder["server"].proc.kill()
    holder["server"].proc.wait(10)


async def test_accepted_messages_survive_a_broker_crash(harness, nats_server: NatsServer, tmp_path: Path) -> None:
    harness.bus.delivery.max_attempts = 1000
    await harness.admin.put(f"{harness.bodysystems.url}/_sim/faults", json={"system": "mof/inbox", "status": 503})
    ids = [f"crash-{i}" for i in range(20)]
    async with harness.client("portal") as c:
        for i, mid in enumerate(ids):
            r = await c.post("/r1/mof/inbox/notices/payment-notices", headers={
                "prefer": "respond-async", "x-bus-message-id": mid},
                json={"noticeId": f"C-{i}", "nationalId": "01010000001", "amount": "10", "reference": mid})
            assert r.status_code == 202, r.text
    assert await harness.bus.delivery.wait_for(ids[-1], {"retrying"}, 10) == "retrying"

    nats_server.proc.send_signal(signal.SIGKILL)
    nats_server.proc.wait(10)
    ports = [int(nats_server.url.rsplit(":", 1)[1]), int(nats_server.monitor.rsplit(":", 1)[1])]
    nats_server.holder["server"] = start_nats(tmp_path / "store", ports)  # type: ignore[attr-defined]

    await harness.admin.put(f"{harness.bodysystems.url}/_sim/faults", json={"system": "mof/inbox", "status": None})
    harness.clock.now += 60  # past the provider circuit's cool-down
    for mid in ids:
        assert await harness.bus.delivery.wait_for(mid, {"delivered"}, 30) == "delivered"
    sim = harness.bodysystems.server.config.app.state.sim
    assert sorted(sim["notices"]["mof"]) == sorted(ids)
    assert sim["deliveries"]["mof"] == len(ids)  # nothing reached the provider twice
