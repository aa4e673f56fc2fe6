"""``govcloud payments reconcile``: against the real payment gateway and switch simulator (processes on loopback,
real PostgreSQL), and its one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from infra.cli import payments

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
TOKEN = "unit-admin-token-" + uuid.uuid4().hex
HEADER = "switch_ref,rtp_id,amount,currency,status,decided_at\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Portal(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"amount": 2500, "currency": "SYP"}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def started(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded wait for the process's readiness
        if proc.poll() is not None:
            raise AssertionError(f"exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not up")


@pytest.fixture(scope="module")
def gateway(pg_server: Any) -> Iterator[dict[str, Any]]:
    """payment and switch as real processes (as deployed), a stub portal."""
    dbs = {c: "t_" + uuid.uuid4().hex[:12] for c in ("payment", "switch")}
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        for name in dbs.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    portal = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=portal.serve_forever, daemon=True).start()
    ports = {"payment": free_port(), "switch": free_port()}
    base = {"PATH": os.environ.get("PATH", "/usr/bin"), "GOVCLOUD_BIND": "127.0.0.1", "PGUSER": "postgres",
            "PGHOST": str(pg_server.socket_dir), "PGPORT": str(pg_server.port),
            "GOVCLOUD_SECRET_CALLBACK_KEY": "unit-key", "GOVCLOUD_SECRET_ADMIN_TOKEN": TOKEN,
            "GOVCLOUD_SECRET_NOTIFY_KEY": "unit-notify", "GOVCLOUD_SETTING_WORKER_INTERVAL_S": "0.2",
            "GOVCLOUD_SETTING_DISPATCH_INTERVAL_S": "0.05"}
    envs = {"switch": {**base, "PGDATABASE": dbs["switch"], "GOVCLOUD_PORT_HTTP": str(ports["switch"]),
                       "GOVCLOUD_URL_PAYMENT": f"http://127.0.0.1:{ports['payment']}",
                       "PYTHONPATH": f"{COMPONENTS / 'common'}:{COMPONENTS / 'switch'}"},
            "payment": {**base, "PGDATABASE": dbs["payment"], "GOVCLOUD_PORT_HTTP": str(ports["payment"]),
                        "GOVCLOUD_URL_SWITCH": f"http://127.0.0.1:{ports['switch']}",
                        "GOVCLOUD_URL_PORTAL": f"http://127.0.0.1:{portal.server_port}",
                        "PYTHONPATH": f"{COMPONENTS / 'common'}:{COMPONENTS / 'payment'}"}}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for c in ("switch", "payment"):
            procs[c] = subprocess.Popen([sys.executable, "-m", c], env=envs[c], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
            started(procs[c], f"http://127.0.0.1:{ports[c]}")
        url = f"http://127.0.0.1:{ports['payment']}"
        ids = []
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(3):
                resp = client.post("/api/orders", headers={"Idempotency-Key": f"cli-{i}"}, json={
                    "kind": "fee", "service_id": "svc", "channel": "mtn-cash", "payer_account": f"0933{i:06d}"})
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["id"])
            deadline = time.monotonic() + 30
            orders: list[dict[str, Any]] = []
            while time.monotonic() < deadline:  # bounded: the switch's callbacks arrive asynchronously
                orders = [client.get(f"/api/orders/{i}").json() for i in ids]
                if all(o["status"] == "paid" for o in orders):
                    break
                time.sleep(0.1)
            assert all(o["status"] == "paid" for o in orders), orders
        yield {"url": url, "orders": orders, "sw_url": f"http://127.0.0.1:{ports['switch']}"}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        portal.shutdown()
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for name in dbs.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class FakeRuntime:
    def __init__(self, url: str) -> None:
        self.url = url

    def endpoint(self, component: str, port: str = "http") -> str:
        assert (component, port) == ("payment", "http")
        return self.url


def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, *args: str,
        token: str | None = TOKEN) -> Any:
    state = tmp_path / "state"
    if token is not None:
        (state / "ci").mkdir(parents=True, exist_ok=True)
        (state / "ci" / "secrets.json").write_text(json.dumps({"payment": {"admin-token": token}}))
    monkeypatch.setenv("GOVCLOUD_STATE_DIR", str(state))
    monkeypatch.setattr(payments, "runtime_for", lambda model: FakeRuntime(url))
    # wide consoles: ids are not folded whatever terminal (or none, under xdist) the tests run in
    monkeypatch.setattr(payments, "out", Console(width=250))
    monkeypatch.setattr(payments, "console", Console(stderr=True, width=250))
    app = typer.Typer()
    payments.register(app)

    @app.callback()
    def _root() -> None:  # a group, as in govcloud
        pass

    return CliRunner().invoke(app, ["payments", "reconcile", "-s", "ci", *args], env={"COLUMNS": "250"})


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_all_lines_matched_exit_0_with_a_table(gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    res = cli(monkeypatch, tmp_path, gateway["url"], "--date", today())
    assert res.exit_code == 0, res.output
    assert "3 matched" in res.output and "all matched" in res.output
    for o in gateway["orders"]:
        assert o["id"] in res.output and o["switch_ref"] in res.output
    assert TOKEN not in res.output


def test_uploaded_settlement_with_mismatches_exit_1_and_json(gateway: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b, _c = gateway["orders"]
    row = "{switch_ref},{id},{amount},SYP,approved,2026-12-07T10:00:00+00:00\n"
    csv_file = tmp_path / "settlement.csv"
    csv_file.write_text(HEADER + row.format(**a) + row.format(**{**b, "amount": b["amount"] + 1})
                        + row.format(switch_ref="SWX", id="PO-unknown", amount=700))
    res = cli(monkeypatch, tmp_path, gateway["url"], "--date", today(), "--settlement", str(csv_file), "--json")
    assert res.exit_code == 1, res.output
    report = json.loads(res.output)
    assert report["source"] == "uploaded" and report["matched"] == 1
    assert {(m["kind"], m["order_id"]) for m in report["mismatches"]} == {
        ("amount_mismatch", b["id"]), ("missing_in_ledger", "PO-unknown"), ("missing_in_settlement", _c["id"])}
    res = cli(monkeypatch, tmp_path, gateway["url"], "--date", today(), "--settlement", str(csv_file),
              "--mismatches-only")
    assert res.exit_code == 1
    assert "amount_mismatch" in res.output and "missing_in_ledger" in res.output and a["id"] not in res.output


def test_a_bad_line_in_the_settlement_file_is_named(gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(HEADER + "SW1,PO1,12.50,SYP,approved,x\n")
    res = cli(monkeypatch, tmp_path, gateway["url"], "--date", today(), "--settlement", str(csv_file))
    assert res.exit_code == 2
    assert res.output.strip() == f"error: --settlement: {csv_file}: line 2: amount '12.50' is not a positive " \
                                 "integer in minor units"


def test_a_refused_token_is_one_line_and_not_printed(gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    res = cli(monkeypatch, tmp_path, gateway["url"], "--date", today(), token="stale-token-value")
    assert res.exit_code == 2
    assert "refused the stack's admin token" in res.output and "stale-token-value" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "needle"), [
    (["--date", "2026-13-01"], "--date: '2026-13-01' is not a date; give it as YYYY-MM-DD"),
    (["--date", "20261201"], "--date: '20261201' is not a date between"),
    (["--date", "1999-12-31"], "is not a date between 2000-01-01 and 2200-12-31"),
    (["--settlement", "/nonexistent/settlement.csv"], "--settlement: cannot read /nonexistent/settlement.csv: "
                                                     "No such file or directory"),
])
def test_bad_arguments_are_one_line_exit_2(args: list[str], needle: str, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    res = cli(monkeypatch, tmp_path, "http://127.0.0.1:9", *args)
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and needle in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


def test_unreadable_settlement_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(HEADER.encode() + "SW1,PO1,5,SYP,approved,Damas\xe9\n".encode("latin-1"))
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    for path, needle in [(latin, "is not UTF-8 text"), (empty, "is empty"), (tmp_path, "is a directory")]:
        res = cli(monkeypatch, tmp_path, "http://127.0.0.1:9", "--settlement", str(path))
        assert res.exit_code == 2 and needle in res.output, res.output


def test_payment_not_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    res = cli(monkeypatch, tmp_path, f"http://127.0.0.1:{port}", "--date", "2026-12-06")
    assert res.exit_code == 2
    assert res.output.strip() == (f"error: payment is not running in stack ci: nothing answers at "
                                  f"http://127.0.0.1:{port} (see `govcloud status -s ci`, start it with "
                                  "`govcloud up -s ci`)")


def test_stack_without_secrets_or_unknown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    res = cli(monkeypatch, tmp_path, "http://127.0.0.1:9", token=None)
    assert res.exit_code == 2 and "no secret payment/admin-token; run `govcloud up -s ci`" in res.output
    monkeypatch.setattr(payments, "runtime_for", lambda model: FakeRuntime("http://127.0.0.1:9"))
    app = typer.Typer()
    payments.register(app)
    app.callback()(lambda: None)
    res = CliRunner().invoke(app, ["payments", "reconcile", "-s", "nope"], env={"COLUMNS": "250"})
    assert res.exit_code == 2 and "no file Pulumi.nope.yaml" in res.output


def test_default_date_is_yesterday() -> None:
    assert payments.parse_day(None, date(2026, 3, 1)) == date(2026, 2, 28)
    assert payments.parse_day("2026-12-06") == date(2026, 12, 6)
