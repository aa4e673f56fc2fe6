"""schemathesis over the admin API: every operation of its OpenAPI document, fuzzed with generated requests
(authenticated), must never answer 5xx and must match its documented responses."""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from conftest import ADMIN_TOKEN

pytestmark = pytest.mark.asyncio


def fuzz(base_url: str, examples: int) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.config.update(base_url=base_url)
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/admin/bodies/seed":
            continue  # covered by test_registry; here its 26 upserts per example only cost time

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=20)
            case.validate_response(response, checks=[not_a_server_error])

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    return tested


async def test_admin_api_never_fails_on_generated_requests(harness) -> None:
    tested = await asyncio.to_thread(fuzz, str(harness.admin.base_url).rstrip("/"), 12)
    assert "PUT /admin/services/{body}/{system}/{service}" in tested and "POST /admin/rights" in tested
    assert len(tested) >= 15
