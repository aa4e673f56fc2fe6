"""The CLI's contract with operators: one-line errors, exit 2, nothing applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def govcloud(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "300", **(env or {})}, check=False)


def test_validate_all_committed_stacks() -> None:
    proc = govcloud("validate")
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_bad_stack_fails_with_one_line_per_problem(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    doc = yaml.safe_load((ROOT / "stacks/Pulumi.ci.yaml").read_text())
    doc["config"]["govcloud:target"] = "aws"
    doc["config"]["govcloud:backup"]["schedule"] = "often"
    (stacks / "Pulumi.broken.yaml").write_text(yaml.safe_dump(doc))
    proc = govcloud("up", "-s", "broken", env={"GOVCLOUD_STACKS_DIR": str(stacks),
                                               "GOVCLOUD_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert any("target: expected one of 'local' or 'openstack', got 'aws'" in e for e in errors)
    assert any("backup.schedule: expected a 5-field cron expression" in e for e in errors)
    assert not (tmp_path / "state").exists()  # nothing applied


def test_unknown_stack() -> None:
    proc = govcloud("status", "-s", "nope")
    assert proc.returncode == 2
    assert "no file Pulumi.nope.yaml" in proc.stderr
