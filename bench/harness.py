"""What the benches that drive ``govcloud`` on throwaway local stacks share (bench/backup_restore.py,
bench/env_lifecycle.py): a private state folder, stack files derived from ``ci``, timed CLI runs.

Imported by those scripts (``python bench/<name>.py`` puts this folder first on the path); run alone it does nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def state_dir(prefix: str) -> Path:
    """This run's state (and restic repositories) in a temporary folder unless GOVCLOUD_STATE_DIR says where;
    returns its envs folder, where stack files go."""
    os.environ.setdefault("GOVCLOUD_STATE_DIR", tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("GOVCLOUD_BACKUP_DIR", os.path.join(os.environ["GOVCLOUD_STATE_DIR"], "backups"))
    envs = Path(os.environ["GOVCLOUD_STATE_DIR"]) / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    return envs


def stack_file(envs: Path, name: str, offset: int, components: dict[str, Any] | None = None) -> Path:
    """A stack ``name`` derived from ``ci`` on its own port offset (and with only some components)."""
    doc = yaml.safe_load((ROOT / "stacks/Pulumi.ci.yaml").read_text())
    doc["config"]["govcloud:local"] = {"portOffset": offset}
    if components is not None:
        doc["config"]["govcloud:components"] = components
    path = envs / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(*args: str) -> tuple[float, str]:
    """``govcloud ARGS``: seconds taken and its output; a failure ends the bench naming the command."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=ROOT, check=False, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"govcloud {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - start, proc.stdout


def govcloud(*args: str) -> float:
    return run(*args)[0]
