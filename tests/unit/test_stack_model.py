"""The stack model: every committed stack loads; every bad input gives one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.model import StackError, list_stacks, load_stack, parse_stack
from infra.model.loader import config_values

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def base_values() -> dict:
    return config_values(STACKS / "Pulumi.staging.yaml")


def load_with(tmp_path: Path, patch: dict, drop: tuple[str, ...] = ()) -> list[str]:
    values = base_values()
    for key in drop:
        values.pop(key)
    for dotted, value in patch.items():
        node = values
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(yaml.safe_dump({"config": {f"govcloud:{k}": v for k, v in values.items()}}))
    with pytest.raises(StackError) as info:
        parse_stack("bad", path)
    return info.value.lines


def test_committed_stacks_load() -> None:
    names = list_stacks()
    assert {"local", "ci", "staging", "prod"} <= set(names)
    for name in names:
        model = load_stack(name)
        assert len(model.bodies) == 26
        assert model.name == name


def test_local_and_ci_ports_do_not_clash() -> None:
    assert load_stack("local").local.port_offset != load_stack("ci").local.port_offset


BAD = [
    ({"target": "aws"}, "target: expected one of 'local' or 'openstack', got 'aws'"),
    ({"network.dmz": "10.99.0.0/24"}, "dmz 10.99.0.0/24 is outside network.cidr"),
    ({"network.app": "10.30.0.0/24"}, "dmz 10.30.0.0/24 overlaps app 10.30.0.0/24"),
    ({"network.cidr": "8.8.0.0/16"}, "network.cidr: expected a private (RFC 1918) range"),
    ({"network.mgmt": "not-a-cidr"}, "network.mgmt: "),
    ({"network.dnsNameservers": []}, "network.dnsNameservers: "),
    ({"cluster.controlPlane": {"count": 2}}, "control plane count must be odd"),
    ({"cluster.workers": [{"name": "a", "count": 1, "flavor": "f"}, {"name": "a", "count": 1, "flavor": "f"}]},
     "worker pool names must be unique, repeated: a"),
    ({"cluster.workers": [{"name": "a", "count": -1, "flavor": "f"}]}, "cluster.workers[0].count: expected"),
    ({"cluster.kubernetesVersion": "latest"}, "cluster.kubernetesVersion: "),
    ({"components.postgres": {"replicas": "two"}}, "components.postgres.replicas: expected a valid integer"),
    ({"components.postgres": {"replicas": 0}}, "components.postgres.replicas: expected greater than or equal to 1"),
    ({"components.postgres": {"resources": {"memory": "1GB"}}}, "components.postgres.resources.memory: "),
    ({"components.postgres": {"resources": {"cpu": "fast"}}}, "components.postgres.resources.cpu: "),
    ({"components.postgres": {"colour": "blue"}}, "components.postgres.colour: unknown field"),
    ({"components.nosuch": {"replicas": 1}}, "components.nosuch: no such component"),
    ({"backup.schedule": "daily"}, "backup.schedule: expected a 5-field cron expression"),
    ({"backup.retention": {"daily": 0}}, "backup.retention.daily: expected greater than or equal to 1"),
    ({"domain": "Bad_Domain"}, "domain: "),
    ({"local": {"portOffset": 50000}}, "local.portOffset: expected less than or equal to 40000"),
    ({"colour": "blue"}, "colour: unknown field"),
]


@pytest.mark.parametrize(("patch", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_values_are_reported_on_one_line(tmp_path: Path, patch: dict, expected: str) -> None:
    lines = load_with(tmp_path, patch)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(str(tmp_path / "Pulumi.bad.yaml")) for line in lines)
    assert all("\n" not in line for line in lines)


def test_missing_required_field(tmp_path: Path) -> None:
    lines = load_with(tmp_path, {}, drop=("network",))
    assert lines == [f"{tmp_path / 'Pulumi.bad.yaml'}: network: required field is missing"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    lines = load_with(tmp_path, {"target": "aws", "backup.schedule": "x", "colour": 1})
    assert len(lines) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config: [1, 2", "not valid YAML"),
        ("just a string", "expected a mapping with a 'config:' key"),
        ("config:\n  aws:region: x\n", "config.aws:region: expected keys named 'govcloud:<field>'"),
        ("config:\n  govcloud:password:\n    secure: AAA\n", "secrets do not belong in stack files"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text)
    with pytest.raises(StackError) as info:
        parse_stack("bad", path)
    assert expected in str(info.value)


def test_unknown_stack_names_the_known_ones() -> None:
    with pytest.raises(StackError, match=r"no file Pulumi.nope.yaml .*known stacks: .*local"):
        load_stack("nope")
