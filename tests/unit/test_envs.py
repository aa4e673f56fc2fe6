"""Environment bookkeeping without containers: names, TTLs, port offsets, nothing half-written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.model import StackError, load_stack
from infra.ops import envs


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GOVCLOUD_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(("ttl", "seconds"), [("90m", 5400), ("2h", 7200), ("1d", 86400)])
def test_ttl(ttl: str, seconds: int) -> None:
    assert envs.parse_ttl(ttl) == seconds


@pytest.mark.parametrize("ttl", ["2 hours", "0h", "-1h", "h", "5w"])
def test_bad_ttl(ttl: str) -> None:
    with pytest.raises(envs.EnvError, match="expected a duration like 90m"):
        envs.parse_ttl(ttl)


@pytest.mark.parametrize("name", ["CI-1", "1ci", "ci_1", "c", "x" * 40])
def test_bad_names(name: str) -> None:
    with pytest.raises(envs.EnvError, match="environment name"):
        envs.create(name, "ci", "1h")


def test_two_environments_get_distinct_ports_and_labels() -> None:
    a = envs.create("ci-a", "ci", "1h")
    b = envs.create("ci-b", "ci", "30m")
    ma, mb = load_stack("ci-a"), load_stack("ci-b")
    offsets = {ma.local.port_offset, mb.local.port_offset, load_stack("ci").local.port_offset,
               load_stack("local").local.port_offset}
    assert len(offsets) == 4
    assert ma.labels["govcloud.env"] == "ci-a"
    assert b.ttl_s == 1800 and a.base == "ci"
    assert [r.name for r in envs.records()] == ["ci-a", "ci-b"]
    with pytest.raises(envs.EnvError, match="already exists"):
        envs.create("ci-a", "ci", "1h")


def test_expired_environments() -> None:
    envs.create("ci-old", "ci", "1h")
    assert envs.expired() == []
    later = datetime.now(UTC) + timedelta(hours=2)
    assert [r.name for r in envs.expired(later)] == ["ci-old"]


def test_unknown_base_leaves_nothing(state: Path) -> None:
    with pytest.raises(StackError, match=r"no file Pulumi\.nope\.yaml"):
        envs.create("ci-x", "nope", "1h")
    assert envs.records() == []
    assert not (state / "envs" / "Pulumi.ci-x.yaml").exists()


def test_destroy_unknown_environment() -> None:
    with pytest.raises(envs.EnvError, match="does not exist"):
        envs.destroy("ci-none", print)


def test_openstack_environment_without_pulumi_cli_fails_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.ops import pulumi_stack

    monkeypatch.setattr(pulumi_stack.shutil, "which", lambda _name: None)
    with pytest.raises(pulumi_stack.CloudStackError, match="the Pulumi CLI is not installed"):
        envs.create("ci-cloud", "staging", "1h")
    assert envs.records() == []


class FakeStack:
    """Pulumi's Automation API stack object, as far as destroy uses it (the CLI boundary)."""

    def __init__(self, pending: list[dict]) -> None:
        from pulumi import automation as auto

        self.deployment = auto.Deployment(version=3, deployment={"resources": [], "pending_operations": pending})
        self.calls: list[str] = []
        self.imported: dict | None = None

    def export_stack(self):  # type: ignore[no-untyped-def]
        self.calls.append("export")
        return self.deployment

    def import_stack(self, deployment) -> None:  # type: ignore[no-untyped-def]
        self.calls.append("import")
        self.imported = deployment.deployment


def test_pending_operations_are_cleared_and_reported() -> None:
    from infra.ops.pulumi_stack import clear_pending

    stack = FakeStack([{"type": "creating", "resource": {"urn": "urn:pulumi:ci::govcloud::openstack:Port::p1"}}])
    said: list[str] = []
    cleared = clear_pending(stack, said.append)
    assert cleared == ["creating urn:pulumi:ci::govcloud::openstack:Port::p1"]
    assert stack.imported is not None and stack.imported["pending_operations"] == []
    assert any("clearing pending operation" in line for line in said)
    clean = FakeStack([])
    assert clear_pending(clean, said.append) == [] and clean.calls == ["export"]
