"""The stack-model fields the cloud layer added: each refused at load, one line per problem."""

from __future__ import annotations

import pytest
from cloud_mocks import STACKS_DIR, merged, stack_values

from infra.model import StackError, parse_stack

PATH = STACKS_DIR / "Pulumi.staging.yaml"


def _parse(**override):
    return parse_stack("staging", PATH, merged(stack_values("staging"), override))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"network": {"adminCidrs": ["0.0.0.0/0"]}}, "network.adminCidrs: expected ranges of /8 or narrower"),
        ({"network": {"egressCidrs": ["0.0.0.0/1"]}}, "network.egressCidrs: expected ranges of /8 or narrower"),
        ({"network": {"adminCidrs": ["300.1.1.1/32"]}}, "network.adminCidrs"),
        ({"cluster": {"sshPublicKeys": ["hunter2"]}}, "cluster.sshPublicKeys: expected OpenSSH public keys"),
        ({"cluster": {"workers": [{"name": "bastion", "count": 1, "flavor": "m1"}]}}, "are reserved"),
        ({"network": {"dmz": "10.30.0.0/28"}}, "dmz 10.30.0.0/28 is too small"),
        ({"cloud": {"designate": "maybe"}}, "cloud.designate"),
    ],
)
def test_refused(override: dict, expected: str) -> None:
    with pytest.raises(StackError) as err:
        _parse(**override)
    assert len(err.value.lines) == 1
    assert expected in err.value.lines[0]


def test_accepted() -> None:
    model = _parse(
        network={"adminCidrs": ["192.0.2.0/28"], "egressCidrs": ["10.0.0.0/24"]},
        cluster={"sshPublicKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeButWellFormed op@gov"]},
        cloud={"designate": True},
    )
    assert [str(c) for c in model.network.admin_cidrs] == ["192.0.2.0/28"]
    assert model.cloud.designate is True and len(model.cluster.ssh_public_keys) == 1
