"""Integration fixtures: throwaway stacks on the local target, each with its own name and ports."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.model import load_stack, state_root
from infra.model.loader import REPO_ROOT


def govcloud(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300"}, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"govcloud {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_stack(prefix: str, offset: int, components: dict | None = None) -> str:
    """A stack file derived from `ci` in the state's envs folder (where `govcloud env create` puts them)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    doc = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.ci.yaml").read_text())
    doc["config"]["govcloud:local"] = {"portOffset": offset}
    if components is not None:
        doc["config"]["govcloud:components"] = components
    envs = state_root() / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    (envs / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc))
    load_stack(name)
    return name


@pytest.fixture
def stack_factory() -> Iterator:
    made: list[str] = []

    def factory(prefix: str, offset: int, components: dict | None = None) -> str:
        name = make_stack(prefix, offset, components)
        made.append(name)
        return name

    yield factory
    for name in made:
        govcloud("down", "-s", name, "--volumes", check=False)
        (state_root() / "envs" / f"Pulumi.{name}.yaml").unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "GOVCLOUD_STATE_DIR" not in os.environ:
        os.environ["GOVCLOUD_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    Path(os.environ["GOVCLOUD_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
    # test stacks' restic repositories stay with their state, not in the user's ~/.local/share/govcloud/backups
    os.environ.setdefault("GOVCLOUD_BACKUP_DIR", str(Path(os.environ["GOVCLOUD_STATE_DIR"]) / "backups"))
