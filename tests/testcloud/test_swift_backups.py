"""Backups in Swift, end to end: a stack on the local target whose restic repository is in the test cloud's
object storage (``backup.repository: swift``) backs up, drills and restores from it; bad credentials, an
unreachable Keystone and a missing container each fail with one line and record nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openstack.exceptions import NotFoundException

from infra.model import load_stack, state_root
from infra.ops.envs import free_offset
from infra.ops.openstack_api import CloudError
from infra.ops.repository import open_repository, swift_container
from infra.ops.sweep import sweep
from infra.runtime.local import LocalRuntime
from tests.integration.conftest import govcloud, make_stack
from tests.integration.test_backup_restore import ONLY_PORTAL, sql
from tests.testcloud.cloudenv import cloud_stack

pytestmark = [pytest.mark.testcloud, pytest.mark.podman]


@pytest.fixture
def swift_stack(os_conn: Any) -> Iterator[str]:
    name = make_stack("tcb", free_offset(), components=ONLY_PORTAL)
    path = state_root() / "envs" / f"Pulumi.{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["govcloud:backup"] = {**doc["config"].get("govcloud:backup", {}), "repository": "swift"}
    doc["config"]["govcloud:cloud"] = {"cloud": "testcloud", "region": "RegionOne"}
    path.write_text(yaml.safe_dump(doc))
    try:
        yield name
    finally:
        govcloud("down", "-s", name, "--volumes", check=False)
        sweep(os_conn, name, lambda _: None)
        path.unlink(missing_ok=True)


def _clouds_with(testcloud: Path, tmp_path: Path, **auth: str) -> str:
    """A copy of the test cloud's clouds.yaml with these auth values changed."""
    doc = yaml.safe_load(testcloud.read_text())
    doc["clouds"]["testcloud"]["auth"].update(auth)
    bad = tmp_path / "clouds.yaml"
    bad.write_text(yaml.safe_dump(doc))
    return str(bad)


def test_backup_drill_and_restore_through_swift(swift_stack: str, os_conn: Any, testcloud: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = swift_stack
    govcloud("up", "-s", stack)
    model = load_stack(stack)
    rt = LocalRuntime(model)

    govcloud("backup", "-s", stack)
    container = swift_container(model)
    meta = os_conn.object_store.get_container_metadata(container).metadata
    assert {k.lower(): v for k, v in meta.items()}["govcloud-stack"] == stack  # the sweep can find it
    objects = [o.name for o in os_conn.object_store.objects(container)]
    assert any(n.startswith("restic/snapshots/") for n in objects) and any(n.startswith("restic/data/") for n in objects)
    snapshots = len(open_repository(model).snapshots([f"govcloud-stack={stack}"]))

    drill = json.loads(govcloud("drill", "-s", stack, "--json").stdout)  # into a fresh stack, from Swift
    assert drill["ok"] and drill["results"] and all(r["ok"] for r in drill["results"]), drill

    services = sql(rt, "SELECT count(*) FROM services")
    sql(rt, "DELETE FROM services WHERE status = 'draft'")
    restored = govcloud("restore", "-s", stack, "-c", "portal", "--yes")
    assert "verified (facts match)" in restored.stdout
    assert sql(rt, "SELECT count(*) FROM services") == services

    # wrong password, unreachable Keystone: one line each, exit 2, no snapshot recorded
    count = len(open_repository(model).snapshots([f"govcloud-stack={stack}"]))
    assert count > snapshots  # the restore took its safety backup first
    for auth, words in (({"password": "not-the-password"}, "refused the credentials"),
                        ({"auth_url": "http://127.0.0.1:9/v3"}, "unreachable")):
        with monkeypatch.context() as patch:
            patch.setenv("OS_CLIENT_CONFIG_FILE", _clouds_with(testcloud, tmp_path, **auth))
            failed = govcloud("backup", "-s", stack, check=False)
        lines = [line for line in failed.stderr.splitlines() if line.strip()]
        assert failed.returncode == 2 and len(lines) == 1 and words in lines[0], failed.stderr
    assert len(open_repository(model).snapshots([f"govcloud-stack={stack}"])) == count


def test_a_cloud_stack_without_its_container_is_refused(os_conn: Any) -> None:
    model = cloud_stack(os_conn)
    try:
        with pytest.raises(CloudError, match=rf"Swift container 'govcloud-{model.name}-backups' does not exist: "
                                             rf"'pulumi up -s {model.name}' creates it"):
            open_repository(model, create=True)
        with pytest.raises(NotFoundException):  # nothing was created behind Pulumi's back
            os_conn.object_store.get_container_metadata(swift_container(model))
    finally:
        (state_root() / "envs" / f"Pulumi.{model.name}.yaml").unlink(missing_ok=True)
