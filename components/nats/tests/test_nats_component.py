"""The nats component: its declared command starts Debian's nats-server with JetStream on the contract's
address and ports, the declared probes answer, and JetStream keeps messages across a restart (the volume)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import nats
import yaml

from infra.contract import ComponentSpec

SPEC_FILE = Path(__file__).resolve().parents[1] / "component.yaml"


def spec() -> ComponentSpec:
    return ComponentSpec.model_validate(yaml.safe_load(SPEC_FILE.read_text()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(store: Path, client: int, monitor: int) -> Iterator[subprocess.Popen[bytes]]:
    s = spec()
    env = {**os.environ, **s.env, "GOVCLOUD_BIND": "127.0.0.1", "GOVCLOUD_PORT_CLIENT": str(client),
           "GOVCLOUD_PORT_MONITOR": str(monitor), "GOVCLOUD_STACK": "test", "GOVCLOUD_SETTING_STORE_DIR": str(store)}
    proc = subprocess.Popen(s.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline, log = time.monotonic() + 20, b""
    try:
        while time.monotonic() < deadline:  # the server logs "Server is ready" once it accepts clients
            line = proc.stderr.readline()
            log += line
            if not line or b"Server is ready" in line:
                break
        assert b"Server is ready" in log, log.decode(errors="replace")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_spec_declares_the_contract() -> None:
    s = spec()
    assert s.ports == {"client": 18020, "monitor": 18021} and s.user == 10020
    assert s.image.base == "debian" and s.image.apt == ["nats-server"]
    assert s.probes is not None and s.probes.port == "monitor"
    assert s.probes.ready == "/healthz?js-enabled-only=true" and s.probes.live == "/healthz"
    assert s.env["GOVCLOUD_SETTING_STORE_DIR"] in s.volumes.values()


def test_command_runs_jetstream_probes_answer_and_messages_persist(tmp_path: Path) -> None:
    client, monitor = free_port(), free_port()
    s = spec()
    assert s.probes is not None

    async def publish() -> int:
        nc = await nats.connect(f"nats://127.0.0.1:{client}")
        js = nc.jetstream()
        await js.add_stream(name="PROBE", subjects=["probe.>"])
        ack = await js.publish("probe.one", b"kept", headers={"Nats-Msg-Id": "p-1"})
        await nc.close()
        return int(ack.seq)

    async def read() -> bytes:
        nc = await nats.connect(f"nats://127.0.0.1:{client}")
        msg = await nc.jetstream().get_msg("PROBE", 1)
        await nc.close()
        return bytes(msg.data)

    with running(tmp_path, client, monitor):
        for path in (s.probes.ready, s.probes.live):
            r = httpx.get(f"http://127.0.0.1:{monitor}{path}", timeout=5)
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        assert asyncio.run(publish()) == 1
    with running(tmp_path, client, monitor):  # same store directory: the volume keeps the stream
        assert asyncio.run(read()) == b"kept"


def test_command_fails_loudly_without_its_port(tmp_path: Path) -> None:
    s = spec()
    env = {**os.environ, **s.env, "GOVCLOUD_BIND": "127.0.0.1", "GOVCLOUD_PORT_MONITOR": str(free_port()),
           "GOVCLOUD_SETTING_STORE_DIR": str(tmp_path)}
    env.pop("GOVCLOUD_PORT_CLIENT", None)
    proc = subprocess.run(s.command, env=env, capture_output=True, timeout=20)
    assert proc.returncode != 0 and b"GOVCLOUD_PORT_CLIENT: not set" in proc.stderr
