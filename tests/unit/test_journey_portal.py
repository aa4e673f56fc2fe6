"""The journey's payment → portal step: the portal knows the order paid, or the failure says why."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from infra.ops.journey import STEPS, Journey, StepFailed

ORDER = "PO1"
PAID = {"order_id": ORDER, "service_id": "moi-0007", "service_known": True, "status": "paid", "amount": 2500,
        "currency": "SYP", "receipt_id": "R1", "at": "2026-12-07T07:00:00+00:00",
        "updated_at": "2026-12-07T07:00:00.2+00:00"}
UNKNOWN = {"type": "about:blank", "title": "unknown order", "status": 404, "detail": "no notification"}


def journey(answers: dict[str, Callable[[httpx.Request], httpx.Response]], token: str | None = None) -> Journey:
    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{request.url.host} {request.method} {request.url.path}"
        return answers[key](request) if key in answers else httpx.Response(404, json={"detail": key})

    t = [0.0]

    def advance(seconds: float) -> None:
        t[0] += seconds

    j = Journey(httpx.Client(transport=httpx.MockTransport(handler)), lambda c, p: f"http://{c}",
                lambda c, k: token if (c, k) == ("payment", "admin-token") else None,
                deadline_s=2.0, clock=lambda: t[0], wait=advance)
    j.ctx.update(order=ORDER, service="moi-0007", amount=2500,
                 receipt={"payload": json.dumps({"order_id": ORDER, "receipt_id": "R1"})})
    return j


def test_the_step_is_the_last_of_the_journey() -> None:
    assert STEPS[-1] == "portal: order known paid"


def test_paid_once_the_notification_arrives() -> None:
    calls = iter([404, 404, 200])

    def portal(request: httpx.Request) -> httpx.Response:
        code = next(calls)
        return httpx.Response(code, json=PAID if code == 200 else UNKNOWN)

    detail = journey({f"portal GET /api/payments/{ORDER}": portal}).portal_told()
    assert detail.startswith(f"{ORDER} paid for moi-0007, receipt R1")


def test_never_told_names_the_dead_letter() -> None:
    dead = [{"id": 2, "target": "portal", "order_id": ORDER, "last_error": "HTTP 404"},
            {"id": 3, "target": "portal", "order_id": "PO2", "last_error": "HTTP 500"}]
    j = journey({f"portal GET /api/payments/{ORDER}": lambda r: httpx.Response(404, json=UNKNOWN),
                 "payment GET /api/admin/notifications/dead": lambda r: httpx.Response(200, json=dead)}, token="t")
    with pytest.raises(StepFailed, match=f"the portal knowing order {ORDER} not within 2 s; payment dead-lettered "
                                         "it: HTTP 404"):
        j.portal_told()


def test_a_portal_that_has_it_otherwise_is_refused() -> None:
    other = {**PAID, "status": "failed", "receipt_id": None}
    j = journey({f"portal GET /api/payments/{ORDER}": lambda r: httpx.Response(200, json=other)})
    with pytest.raises(StepFailed, match="'status': 'failed', 'receipt_id': None"):
        j.portal_told()


def test_a_portal_error_is_not_waited_for() -> None:
    j = journey({f"portal GET /api/payments/{ORDER}": lambda r: httpx.Response(503, text="down")})
    with pytest.raises(StepFailed, match="answered HTTP 503"):
        j.portal_told()
