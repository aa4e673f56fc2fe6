"""Bootstrap on a stack: the 26 bodies and the sample body systems registered from bodysystems; then a payment
notice in the payment component's shape crosses the bus asynchronously to a body's inbox."""

from __future__ import annotations

import asyncio

import pytest
from bus import cli
from bus.app import BusConfig, ensure_certificate

pytestmark = pytest.mark.asyncio


async def test_bootstrap_registers_samples_and_a_payment_notice_reaches_the_body(harness, pg_dsn: str) -> None:
    result = await asyncio.to_thread(cli.seed_samples, pg_dsn, harness.bodysystems.url, ["moi/portal"], 5.0)
    assert result == {"services": 28, "clients": ["moi/portal"]}
    await harness.bus.registry.reload()
    outcome = {"event": "order.paid", "order_id": "ord-77", "status": "paid", "amount": 2500, "currency": "SYP",
               "bill_reference": "TAX-2026-77", "switch_ref": "SW-77", "receipt_id": "R-77",
               "at": "2026-01-01T00:00:00Z"}
    async with harness.client("portal") as c:
        r = await c.post("/r1/tax/inbox/notices/payment-notices", json=outcome,
                         headers={"prefer": "respond-async", "x-bus-message-id": "pay-ord-77"})
    assert r.status_code == 202, r.text
    assert await harness.bus.delivery.wait_for("pay-ord-77", {"delivered"}, 10) == "delivered"
    stored = harness.bodysystems.server.config.app.state.sim["notices"]["tax"]["pay-ord-77"]
    assert stored["notice"]["bill_reference"] == "TAX-2026-77" and stored["client"] == "moi/portal"
    again = await asyncio.to_thread(cli.seed_samples, pg_dsn, harness.bodysystems.url, ["moi/portal"], 5.0)
    assert again == result  # idempotent


async def test_seed_samples_is_skipped_without_bodysystems(monkeypatch, pg_dsn: str) -> None:
    monkeypatch.delenv("GOVCLOUD_URL_BODYSYSTEMS", raising=False)
    assert cli.seed_samples(pg_dsn) == {"samples": "skipped: GOVCLOUD_URL_BODYSYSTEMS not set"}


async def test_own_certificate_present_or_a_clear_error(pki, tmp_path) -> None:
    crt, key = pki.files["bus"]
    present = BusConfig(admin_token="x", tls_cert=str(crt), tls_key=str(key), ca_bundle=str(pki.ca_bundle))
    assert ensure_certificate(present).startswith("present: serial")
    missing = BusConfig(admin_token="x", tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"),
                        ca_bundle=str(tmp_path / "chain.pem"))
    with pytest.raises(RuntimeError, match="GOVCLOUD_SECRET_CA_TOKEN and GOVCLOUD_URL_CA are needed"):
        ensure_certificate(missing)
