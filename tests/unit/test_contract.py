"""The component contract: start order from depends_on; broken declarations refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.contract import load_components
from infra.model import StackError


def write(root: Path, name: str, **fields: object) -> None:
    (root / name).mkdir(parents=True)
    doc = {"name": name, "description": "x", "command": ["x"], "ports": {"http": 1}, "user": 1000, **fields}
    (root / name / "component.yaml").write_text(yaml.safe_dump(doc))


def test_real_components_load_in_dependency_order() -> None:
    order = list(load_components())
    for i, name in enumerate(order):
        for dep in load_components()[name].depends_on:
            assert order.index(dep) < i


def test_start_order(tmp_path: Path) -> None:
    write(tmp_path, "web", depends_on=["db", "cache"])
    write(tmp_path, "db")
    write(tmp_path, "cache", depends_on=["db"])
    assert list(load_components(tmp_path)) == ["db", "cache", "web"]


def test_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "aa", depends_on=["bb"])
    write(tmp_path, "bb", depends_on=["aa"])
    with pytest.raises(StackError, match="depends_on forms a cycle"):
        load_components(tmp_path)


def test_unknown_dependency_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "aa", calls=["ghost"])
    with pytest.raises(StackError, match="unknown component 'ghost'"):
        load_components(tmp_path)


def test_probe_port_must_exist(tmp_path: Path) -> None:
    write(tmp_path, "aa", probes={"port": "admin"})
    with pytest.raises(StackError, match=r"probes.port 'admin' is not one of ports"):
        load_components(tmp_path)
