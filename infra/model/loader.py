"""Find and load stack files (Pulumi stack-config format: ``config: {govcloud:<key>: value}``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from infra.model.errors import StackError, from_validation
from infra.model.stack import StackModel

PROJECT = "govcloud"
REPO_ROOT = Path(__file__).resolve().parents[2]


def state_root() -> Path:
    """Where govcloud keeps per-stack state (secrets, ephemeral stack files)."""
    env = os.environ.get("GOVCLOUD_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "govcloud"


def stack_dirs() -> list[Path]:
    """Committed stacks first, then ephemeral environments made by ``govcloud env create``."""
    dirs = [Path(os.environ.get("GOVCLOUD_STACKS_DIR", REPO_ROOT / "stacks"))]
    dirs.append(state_root() / "envs")
    return dirs


def stack_file(name: str) -> Path:
    for d in stack_dirs():
        path = d / f"Pulumi.{name}.yaml"
        if path.is_file():
            return path
    known = ", ".join(list_stacks()) or "none"
    raise StackError([f"stack {name!r}: no file Pulumi.{name}.yaml in {stack_dirs()[0]} (known stacks: {known})"])


def list_stacks() -> list[str]:
    names: list[str] = []
    for d in stack_dirs():
        names += sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in d.glob("Pulumi.*.yaml"))
    return names


def config_values(path: Path) -> dict[str, Any]:
    """The ``govcloud:`` keys of a Pulumi stack file, without the namespace."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise StackError([f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise StackError([f"{path}: expected a mapping with a 'config:' key (Pulumi stack config format)"])
    values: dict[str, Any] = {}
    problems = []
    for key, value in doc["config"].items():
        ns, _, field = str(key).partition(":")
        if ns != PROJECT or not field:
            problems.append(f"{path}: config.{key}: expected keys named '{PROJECT}:<field>'")
            continue
        if isinstance(value, dict) and "secure" in value:
            problems.append(f"{path}: config.{key}: secrets do not belong in stack files (govcloud generates them)")
            continue
        values[field] = value
    if problems:
        raise StackError(problems)
    return values


def parse_stack(name: str, path: Path, values: dict[str, Any] | None = None) -> StackModel:
    data = dict(config_values(path) if values is None else values)
    data["name"] = name
    try:
        model = StackModel.model_validate(data)
    except ValidationError as exc:
        raise from_validation(str(path), exc) from None
    from infra.contract import load_components  # late: the contract imports the model

    known = set(load_components())
    unknown = sorted(set(model.components) - known)
    if unknown:
        raise StackError(
            [f"{path}: components.{u}: no such component (known: {', '.join(sorted(known))})" for u in unknown]
        )
    return model


def load_stack(name: str) -> StackModel:
    return parse_stack(name, stack_file(name))
