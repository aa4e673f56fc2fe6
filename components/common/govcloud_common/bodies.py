"""The 26 government bodies (CPSV-AP public organisations), read from the one shared ``bodies.yaml``.

Looked up in order: ``$GOVCLOUD_BODIES_FILE``; the repository's ``infra/data/bodies.yaml`` (running from a
checkout); ``/opt/govcloud/common/bodies.yaml`` (the image builder copies the file there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

IMAGE_PATH = Path("/opt/govcloud/common/bodies.yaml")
REPO_PATH = Path(__file__).resolve().parents[3] / "infra" / "data" / "bodies.yaml"
TYPES = ("ministry", "agency", "authority")


@dataclass(frozen=True)
class Body:
    id: str
    type: str
    en: str
    ar: str
    parent: str | None = None


def bodies_file() -> Path:
    env = os.environ.get("GOVCLOUD_BODIES_FILE")
    candidates = [Path(env)] if env else []
    candidates += [REPO_PATH, IMAGE_PATH]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("bodies.yaml not found; looked in: " + ", ".join(str(p) for p in candidates))


def load_bodies(path: Path | None = None) -> tuple[Body, ...]:
    """Every body, in file order, validated (unique ids, known type, parents that exist)."""
    source = path or bodies_file()
    items = yaml.safe_load(source.read_text(encoding="utf-8")) or []
    bodies = tuple(
        Body(id=str(i["id"]), type=str(i["type"]), en=str(i["en"]), ar=str(i["ar"]), parent=i.get("parent"))
        for i in items
    )
    ids = [b.id for b in bodies]
    problems = [f"duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    problems += [f"{b.id}: unknown type {b.type!r}" for b in bodies if b.type not in TYPES]
    problems += [f"{b.id}: unknown parent {b.parent!r}" for b in bodies if b.parent and b.parent not in ids]
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return bodies
