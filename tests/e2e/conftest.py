"""End-to-end fixtures: the whole platform as a throwaway stack derived from `ci`, torn down with its volumes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.model import load_stack, state_root
from infra.model.loader import REPO_ROOT

PORT_OFFSET = 5000


def govcloud(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300"}, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"govcloud {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


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
    """A stack file derived from `ci` (own name, ports shifted by PORT_OFFSET) in the state's envs folder."""
    name = f"e2e-{secrets.token_hex(3)}"
    doc = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.ci.yaml").read_text())
    doc["config"]["govcloud:local"] = {"portOffset": PORT_OFFSET}
    envs = state_root() / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    stack_file = envs / f"Pulumi.{name}.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    load_stack(name)
    yield name
    down = govcloud("down", "-s", name, "--volumes", check=False)
    left = podman_objects(name)
    stack_file.unlink(missing_ok=True)
    shutil.rmtree(Path(os.environ["GOVCLOUD_BACKUP_DIR"]) / name, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert left == {"pod": [], "container": [], "volume": [], "secret": []}, left
