"""The whole platform on the local target: up, healthy with the citizen journey, backed up, restore drill into a
fresh stack verified and healthy (its own journey), torn down leaving nothing in podman (the drill's and the
fixture's finalizer)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.ops.journey import STEPS

from .conftest import govcloud, govcloud_json, podman_objects

pytestmark = pytest.mark.e2e


def by_layer(report: Any, layer: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"] if c["layer"] == layer}


def test_platform_up_healthy_journey_backup_drill(platform_stack: str) -> None:
    govcloud("up", "-s", platform_stack)

    first: Any = govcloud_json("health", "-s", platform_stack, ok_codes=(0, 1))  # 1: not backed up yet
    journey = by_layer(first, "journey")
    assert list(journey) == list(STEPS)
    assert all(c["status"] == "ok" for c in journey.values()), journey
    not_ok = [c for c in first["checks"] if c["status"] != "ok" and c["layer"] != "backups"]
    assert not_ok == [], not_ok
    assert {c["status"] for c in by_layer(first, "certificates").values()} == {"ok"}

    govcloud("backup", "-s", platform_stack)
    report: Any = govcloud_json("health", "-s", platform_stack)
    assert report["status"] == "ok", [c for c in report["checks"] if c["status"] != "ok"]
    assert all(c["status"] == "ok" for c in by_layer(report, "journey").values())
    assert by_layer(report, "backups") and by_layer(report, "components")

    # the backup restored into a fresh throwaway stack: verified, healthy with its own citizen journey, gone after
    drill: Any = govcloud_json("drill", "-s", platform_stack)
    assert drill["ok"] and drill["health_status"] == "ok" and all(r["ok"] for r in drill["results"]), drill
    drill_journey = by_layer({"checks": drill["health"]}, "journey")
    assert list(drill_journey) == list(STEPS) and all(c["status"] == "ok" for c in drill_journey.values())
    assert drill["leftovers"] == [] and podman_objects(drill["drill_stack"]) == {
        "pod": [], "container": [], "volume": [], "secret": []}
