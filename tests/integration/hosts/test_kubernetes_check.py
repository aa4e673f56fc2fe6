"""The ``kubernetes`` role in ``--check --diff`` against container hosts: a first control plane node and a worker.

Proves the role's tasks resolve on real hosts (facts, inventory, conditions, delegation) and that Ansible
renders kubeadm's configuration from the inventory: the rendered files are taken from the run's own diff
events and checked structurally (``infra.hosts.kubeadm``) against the stack. Check mode runs no command:
``kubeadm init``/``join`` and the join token fetch are skipped, so the JoinConfiguration's secrets are empty
here (their extraction from kubeadm's output is unit-tested). Skipped by tag, with the reason: the package
tasks (``kubernetes_packages``: apt would need the Kubernetes apt mirror, which nothing here serves) and the
CNI (``kubernetes_cni``: get_url probes the artifact mirror's Calico manifest even in check mode).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from containerhosts import MIRROR_VARS, Fleet, connection_vars, host_image, hosts_file, model, start_hosts

from infra.hosts import build_inventory
from infra.hosts.kubeadm import Expected, check
from infra.hosts.runner import run_playbook

pytestmark = pytest.mark.podman


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = start_hosts(host_image(tmp_path_factory.mktemp("images")), 2, "kubecheck", tmp_path_factory.mktemp("ssh"))
    try:
        yield fleet
    finally:
        fleet.remove()


def _rendered(pdd: Path, task: str) -> dict[str, str]:
    """host -> the file content the ``template`` task ``task`` would write (its diff's 'after')."""
    out: dict[str, str] = {}
    for path in pdd.glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        data: dict[str, Any] = event.get("event_data") or {}
        if event.get("event") != "runner_on_ok" or data.get("task") != task:
            continue
        diff = data["res"].get("diff")
        diffs = diff if isinstance(diff, list) else [diff]
        out[data["host"]] = next(d["after"] for d in diffs if d and "after" in d)
    return out


def test_kubernetes_role_in_check_mode_renders_sound_kubeadm_configuration(hosts: Fleet, tmp_path: Path) -> None:
    stack = model(hosts.pub)
    cp, worker = hosts.hosts
    inventory = build_inventory(stack, hosts=hosts_file(tmp_path / "hosts", [cp], [worker])).write(
        tmp_path / "inventory.yml")
    started = time.monotonic()
    pdd = tmp_path / "run"
    result = run_playbook("bootstrap.yml", inventory, tags="kubernetes", skip_tags="kubernetes_packages,kubernetes_cni",
                          check=True, private_data_dir=pdd, extravars={**connection_vars(hosts), **MIRROR_VARS})
    took = time.monotonic() - started
    assert result.ok, [f.line() for f in result.failures]
    assert set(result.hosts) == {"dc-cp-1", "dc-w-1"}

    want = Expected(version=stack.cluster.kubernetes_version, endpoint="10.213.0.140:6443",
                    pod_cidr=str(stack.cluster.pod_cidr), service_cidr=str(stack.cluster.service_cidr),
                    registry="registry.hostsit.example.gov", node_network=str(stack.network.app))
    init = _rendered(pdd, "Kubeadm configuration")
    assert set(init) == {"dc-cp-1", "dc-w-1"}
    docs = list(yaml.safe_load_all(init["dc-cp-1"]))
    assert check(docs, "dc-cp-1", want) == [], init["dc-cp-1"]
    assert next(d for d in docs if d["kind"] == "InitConfiguration")["localAPIEndpoint"]["advertiseAddress"] == cp.address

    join = _rendered(pdd, "Join configuration (discovery through the API load balancer)")
    assert set(join) == {"dc-w-1"}  # the first control plane node initialises, it does not join
    (worker_join,) = yaml.safe_load_all(join["dc-w-1"])
    assert check([worker_join], "dc-w-1", want, secrets_known=False) == [], join["dc-w-1"]
    assert "controlPlane" not in worker_join
    print(f"kubernetes --check on 2 hosts: {took:.1f}s")
