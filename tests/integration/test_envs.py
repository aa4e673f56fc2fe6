"""Ephemeral environments on podman: side by side, healthy, and destroyed without a trace."""

from __future__ import annotations

import json
import secrets

import pytest

from infra.ops import envs
from tests.integration.conftest import govcloud

pytestmark = pytest.mark.podman


def test_create_list_destroy_leaves_nothing() -> None:
    a, b = f"it-{secrets.token_hex(2)}", f"it-{secrets.token_hex(2)}"
    try:
        created = json.loads(govcloud("env", "create", a, "--ttl", "30m", "--json").stdout)
        govcloud("env", "create", b, "--ttl", "30m")
        assert created["name"] == a and created["endpoints"]["portal"].startswith("http://127.0.0.1:")
        listed = {r["name"]: r for r in json.loads(govcloud("env", "list", "--json").stdout)}
        assert listed[a]["status"] == "ready" and listed[b]["status"] == "ready"
        assert 0 < listed[a]["ttl_left_s"] <= 1800
        govcloud("env", "destroy", a)
        assert envs.leftovers(a) == []
        other = govcloud("status", "-s", b, "--json")  # destroying one leaves the other untouched
        assert '"ready": false' not in other.stdout
    finally:
        for name in (a, b):
            if name in [r.name for r in envs.records()]:
                govcloud("env", "destroy", name)
    for name in (a, b):
        assert envs.leftovers(name) == []
    assert a not in govcloud("env", "list", "--json").stdout


def test_interrupted_destroy_is_finished_by_running_it_again() -> None:
    name = f"it-{secrets.token_hex(2)}"
    govcloud("env", "create", name, "--ttl", "30m")
    # an interruption after the pods went away: volumes, secrets, state and the stack file remain
    govcloud("down", "-s", name)
    assert envs.leftovers(name)
    govcloud("env", "destroy", name)
    assert envs.leftovers(name) == []
