"""End-to-end fixtures: the whole platform as a throwaway stack derived from `ci`, torn down with its volumes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import govcloud


def govcloud_json(*args: str, ok_codes: tuple[int, ...] = (0,)) -> object:
    proc = govcloud(*args, "--json", check=False)
    assert proc.returncode in ok_codes, f"govcloud {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n" \
                                        f"{proc.stderr}"
    return json.loads(proc.stdout)


def podman_objects(stack: str) -> dict[str, list[str]]:
    kinds = {"pod": ["pod", "ps", "--format", "{{.Name}}"], "container": ["ps", "-a", "--format", "{{.Names}}"],
             "volume": ["volume", "ls", "--format", "{{.Name}}"],
             "secret": ["secret", "ls", "--noheading", "--format", "{{.Name}}"]}
    found = {}
    for kind, args in kinds.items():
        out = subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout
        found[kind] = [n for n in out.split() if n.startswith(f"{stack}-")]
    return found


@pytest.fixture(scope="session", autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "GOVCLOUD_STATE_DIR" not in os.environ:
        os.environ["GOVCLOUD_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    root = Path(os.environ["GOVCLOUD_STATE_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GOVCLOUD_BACKUP_DIR", str(root / "backups"))


@pytest.fixture
def platform_stack() -> Iterator[str]:
    """The platform as CI runs it: an ephemeral environment from `ci`, destroyed even when the test fails."""
    from infra.ops import envs

    name = f"e2e-{os.environ.get('CI_JOB_ID', secrets.token_hex(3))[-8:]}"
    if name in [r.name for r in envs.records()]:  # a previous run of the same job was killed
        govcloud("env", "destroy", name)
    created = govcloud_json("env", "create", name, "--from", "ci", "--ttl", "1h")
    assert isinstance(created, dict) and created["name"] == name
    yield name
    destroyed = govcloud("env", "destroy", name, check=False)
    left = podman_objects(name)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert left == {"pod": [], "container": [], "volume": [], "secret": []}, left
    assert envs.leftovers(name) == []
