"""Fixtures for the cloud tests; the mock machinery lives in cloud_mocks.py (same folder)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cloud_mocks import LOCAL_STACKS, OPENSTACK_STACKS, Built, construct, merged, stack_values

_CACHE: dict[str, Built] = {}


@pytest.fixture(scope="session")
def built() -> Callable[[str], Built]:
    """Each committed OpenStack stack constructed once per test process."""

    def get(stack: str) -> Built:
        if stack not in _CACHE:
            _CACHE[stack] = construct(stack)
        return _CACHE[stack]

    return get


@pytest.fixture(scope="session")
def build_with() -> Callable[..., Built]:
    """Construct a stack with config overrides (deep-merged into its YAML values)."""

    def get(stack: str, **overrides: Any) -> Built:
        return construct(stack, merged(stack_values(stack), overrides))

    return get


ADMIN_CIDRS = ["192.0.2.0/28", "198.51.100.7/32"]
EGRESS_CIDRS = ["10.0.0.0/24"]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGovCloudTestKeyOnlyForUnitTestsXyZ operator@gov"


@pytest.fixture(scope="session")
def variant(build_with: Callable[..., Built]) -> Built:
    """``staging`` with every optional cloud field set: admin and egress ranges, SSH keys, Designate."""
    return build_with(
        "staging",
        network={"adminCidrs": ADMIN_CIDRS, "egressCidrs": EGRESS_CIDRS},
        cluster={"sshPublicKeys": [SSH_KEY]},
        cloud={"designate": True},
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "openstack_stack" in metafunc.fixturenames:
        metafunc.parametrize("openstack_stack", OPENSTACK_STACKS)
    if "local_stack" in metafunc.fixturenames:
        metafunc.parametrize("local_stack", LOCAL_STACKS)
