"""How the cloud-facing operations recognise a stack's resources and where its backups go (no cloud needed:
the behaviour against a real OpenStack is in tests/testcloud)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from keystoneauth1 import exceptions as ks
from openstack import exceptions as sdk

from infra.cloud.tags import Tagger, backup_containers
from infra.model import load_stack
from infra.ops.openstack_api import CloudError, cloud_errors, describe
from infra.ops.repository import repository_url, uses_swift
from infra.ops.sweep import Marks


def res(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**{"tags": None, "metadata": None, "description": None, "name": None, **kw})


def test_a_stack_is_recognised_by_its_tags_metadata_and_description_only() -> None:
    t = Tagger("ci")
    marks = Marks("ci", other_stacks=["ci-2", "prod"])
    assert marks.any(res(tags=t.tags("network")))
    assert marks.any(res(metadata={"Govcloud-Stack": "ci"}))  # Swift capitalises metadata keys
    assert marks.any(res(description=t.describe("dns", "zone of stack ci")))
    assert not marks.any(res(tags=Tagger("ci-2").tags("network"), description=Tagger("ci-2").describe("x", "y")))
    assert not marks.any(res(metadata={"govcloud-stack": "ci-2"}, name="govcloud-ci-app"))  # names only by name()


def test_names_of_a_longer_stack_are_not_taken_for_ours() -> None:
    marks = Marks("ci", other_stacks=["ci-2", "prod"])
    assert marks.name(res(name="govcloud-ci-general"))
    assert not marks.name(res(name="govcloud-ci-2-general"))
    assert not marks.name(res(name="govcloud-cix-general")) and not marks.name(res(name="other"))


def test_backups_go_where_the_program_puts_the_container() -> None:
    prod, local = load_stack("prod"), load_stack("local")
    assert uses_swift(prod) and not uses_swift(local)
    assert repository_url(prod) == f"swift:{backup_containers(Tagger('prod'))['restic']}:/restic"
    assert repository_url(local).endswith("/local")
    offsite = local.model_copy(update={"backup": local.backup.model_copy(update={"repository": "swift"})})
    assert repository_url(offsite) == "swift:govcloud-local-backups:/restic"


@pytest.mark.parametrize(("exc", "words"), [
    (ks.Unauthorized(), "refused the credentials (HTTP 401): fix the entry in clouds.yaml"),
    (ks.ConnectFailure("refused"), "Keystone is unreachable (ConnectFailure): check auth_url"),
    (sdk.ConfigException("Cloud nope was not found."), "Cloud nope was not found. (set OS_CLIENT_CONFIG_FILE"),
    (sdk.ConflictException("Port in use\nmore"), "ConflictException: Port in use"),
])
def test_cloud_failures_become_one_line(exc: Exception, words: str) -> None:
    line = describe(exc, "testcloud")
    assert words in line and "\n" not in line and line.startswith("cloud 'testcloud': ")
    with pytest.raises(CloudError, match="testcloud"), cloud_errors("testcloud"):
        raise exc


def test_the_sdk_wrapping_a_keystone_failure_is_still_named() -> None:
    try:
        try:
            raise ks.Unauthorized("The request you have made requires authentication. (HTTP 401)")
        except ks.Unauthorized as inner:
            raise sdk.SDKException("The request you have made requires authentication.") from inner
    except sdk.SDKException as exc:
        assert "refused the credentials" in describe(exc, "testcloud")
