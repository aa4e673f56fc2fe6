"""The citizen journey's failure reporting: the failing step is the one `down` check, with why, on one line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from infra.ops.health import DEGRADED, DOWN, OK
from infra.ops.journey import STEPS, Journey

SERVICE = {"id": "moi-0007", "body_id": "moi", "fee_syp": 2500}
ORDER = {"id": "PO1", "status": "pending", "amount": 2500, "switch_ref": "SW1", "reason": None}


def world(overrides: dict[str, Callable[[httpx.Request], httpx.Response]] | None = None) -> httpx.MockTransport:
    """Portal and payment as they answer; ``overrides`` keyed by "<host> <METHOD> <path>" replace an answer."""
    answers: dict[str, Callable[[httpx.Request], httpx.Response]] = {
        "portal GET /api/services": lambda r: httpx.Response(200, json={"total": 1, "items": [SERVICE]}),
        "portal GET /api/services/moi-0007/fee": lambda r: httpx.Response(
            200, json={"service_id": "moi-0007", "body_id": "moi", "amount": 2500, "currency": "SYP"}),
        "payment GET /api/channels": lambda r: httpx.Response(200, json=[{"id": "mtn-cash", "enabled": True}]),
        "payment POST /api/orders": lambda r: httpx.Response(201, json=ORDER),
        "payment GET /api/orders/PO1": lambda r: httpx.Response(200, json=ORDER),
        **(overrides or {}),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{request.url.host} {request.method} {request.url.path}"
        return answers[key](request) if key in answers else httpx.Response(404, json={"detail": key})
    return httpx.MockTransport(handler)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def run(transport: httpx.MockTransport, **kw: Any) -> list[Any]:
    clock = Clock()
    with httpx.Client(transport=transport) as client:
        journey = Journey(client, lambda component, port: f"http://{component}", lambda c, k: None,
                          clock=clock, wait=clock.advance, **kw)
        return journey.run()


def assert_fails_at(checks: list[Any], step: str, why: str) -> None:
    assert [c.name for c in checks] == list(STEPS)
    at = STEPS.index(step)
    assert [c.status for c in checks[:at]] == [OK] * at
    [down] = [c for c in checks if c.status == DOWN]
    assert down.name == step and down.detail.startswith(f"{step} failed: ") and why in down.detail, down.detail
    assert "\n" not in down.detail and down.seconds >= 0
    for later in checks[at + 1:]:
        assert later.status == DEGRADED and later.detail == f"not run: {step!r} failed" and later.seconds == 0


def test_portal_down_fails_the_first_step_and_nothing_else_runs() -> None:
    checks = run(world({"portal GET /api/services": lambda r: httpx.Response(503, text="catalog\nunavailable")}))
    assert_fails_at(checks, "portal: find a service", "answered HTTP 503: catalog unavailable")


def test_no_fee_bearing_service_is_reported() -> None:
    checks = run(world({"portal GET /api/services": lambda r: httpx.Response(200, json={"total": 3, "items": []})}))
    assert_fails_at(checks, "portal: find a service", "no published service with a fee among 3 published")


def test_switch_unavailable_fails_the_order_with_the_payment_problem() -> None:
    problem = {"title": "switch unavailable", "status": 503}
    checks = run(world({"payment POST /api/orders": lambda r: httpx.Response(503, json=problem)}))
    assert_fails_at(checks, "payment: create the fee order", "payment POST /api/orders answered HTTP 503")


def test_order_for_another_amount_is_refused() -> None:
    checks = run(world({"payment POST /api/orders": lambda r: httpx.Response(201, json={**ORDER, "amount": 1})}))
    assert_fails_at(checks, "payment: create the fee order", "expected pending for 2500")


def test_declined_payment_names_the_reason() -> None:
    declined = {**ORDER, "status": "declined", "reason": "insufficient funds"}
    checks = run(world({"payment GET /api/orders/PO1": lambda r: httpx.Response(200, json=declined)}))
    assert_fails_at(checks, "switch: confirm the payment", "order PO1 declined: insufficient funds")


def test_a_decision_that_never_comes_fails_after_the_deadline() -> None:
    checks = run(world(), deadline_s=3.0)
    assert_fails_at(checks, "switch: confirm the payment", "the switch's decision not within 3 s")


def test_unreachable_payment_is_one_line_naming_the_step() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    checks = run(world({"payment GET /api/channels": refuse}))
    assert_fails_at(checks, "payment: create the fee order", "ConnectError: connection refused")


def test_a_receipt_not_matching_the_order_is_refused() -> None:
    paid = {**ORDER, "status": "paid"}
    receipt = {"payload": '{"order_id": "PO1", "amount": 9, "switch_ref": "SW1", "service_id": "moi-0007"}',
               "signature": "", "algorithm": "ecdsa-sha256", "chain": []}
    checks = run(world({"payment GET /api/orders/PO1": lambda r: httpx.Response(200, json=paid),
                        "payment GET /api/orders/PO1/receipt": lambda r: httpx.Response(200, json=receipt)}))
    assert_fails_at(checks, "payment: signed receipt", "receipt does not match the order: {'amount': 9}")


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> Any:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def test_a_receipt_whose_signature_does_not_match_fails_offline_verification() -> None:
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", root_key, "root", root_key, True)
    platform = _cert("platform", ca_key, "root", root_key, True)
    leaf = _cert("receipts", leaf_key, "platform", ca_key, False)
    pem = [c.public_bytes(Encoding.PEM).decode() for c in (leaf, platform, root)]
    payload = json.dumps({"order_id": "PO1", "amount": 2500, "switch_ref": "SW1", "service_id": "moi-0007",
                          "receipt_id": "R1"})
    forged = base64.b64encode(leaf_key.sign(b"another payload", ec.ECDSA(hashes.SHA256()))).decode()
    receipt = {"payload": payload, "signature": forged, "algorithm": "ecdsa-sha256", "chain": pem}
    cas = [{"name": "root", "certificate": pem[2], "parent": None},
           {"name": "platform", "certificate": pem[1], "parent": "root"}]
    paid = {**ORDER, "status": "paid"}
    checks = run(world({"payment GET /api/orders/PO1": lambda r: httpx.Response(200, json=paid),
                        "payment GET /api/orders/PO1/receipt": lambda r: httpx.Response(200, json=receipt),
                        "ca GET /api/v1/cas": lambda r: httpx.Response(200, json=cas)}))
    assert_fails_at(checks, "receipt: signature and chain", "the receipt's signature does not match its payload")
