"""The ``container_runtime`` role converged for real in a container host, twice (second run: changed=0).

containerd comes from apt on this machine's Debian mirror (the stand-in for the data centre's mirror) and
runs under the host's systemd. The configuration is asserted as containerd itself reads it
(``containerd config dump``): systemd cgroups, the sandbox image on the stack's registry, the registry
mirror directory; an image pull from ``docker.io`` goes to the stack's registry and nowhere else.
Inside a container the kernel is the host's: the module loading and ``sysctl -p`` are skipped by
``container_runtime_in_container`` (from Ansible's facts); the files that load them at boot are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerhosts import MIRROR_VARS, Fleet, connection_vars, host_image, hosts_file, in_host, model, start_hosts

from infra.hosts import build_inventory
from infra.hosts.runner import RunResult, run_playbook

pytestmark = pytest.mark.podman

REGISTRY = "registry.hostsit.example.gov"  # the model's registry mirror (registry.<domain>)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = start_hosts(host_image(tmp_path_factory.mktemp("images")), 1, "runtime", tmp_path_factory.mktemp("ssh"))
    try:
        yield fleet
    finally:
        fleet.remove()


def _converge(inventory: Path, fleet: Fleet, tmp: Path) -> RunResult:
    return run_playbook("bootstrap.yml", inventory, tags="container_runtime", limit="dc-cp-1", private_data_dir=tmp,
                        extravars={**connection_vars(fleet), **MIRROR_VARS})


def test_container_runtime_converges_and_is_idempotent(host: Fleet, tmp_path: Path) -> None:
    name = host.hosts[0].name
    inventory = build_inventory(model(host.pub), hosts=hosts_file(tmp_path / "hosts", host.hosts, [])).write(
        tmp_path / "inventory.yml")
    started = time.monotonic()
    first = _converge(inventory, host, tmp_path / "run1")
    first_s = time.monotonic() - started
    assert first.ok, [f.line() for f in first.failures]
    assert first.hosts["dc-cp-1"].changed > 0

    # containerd from the mirror, running under systemd, with the configuration the role rendered
    assert in_host(name, "dpkg-query", "-W", "-f", "${Status}", "containerd").stdout == "install ok installed"
    assert in_host(name, "systemctl", "is-active", "containerd").stdout.strip() == "active"
    assert in_host(name, "systemctl", "is-enabled", "containerd").stdout.strip() == "enabled"
    dump = in_host(name, "containerd", "config", "dump").stdout
    assert "SystemdCgroup = true" in dump
    assert f'sandbox_image = "{REGISTRY}/pause:3.10"' in dump
    assert 'config_path = "/etc/containerd/certs.d"' in dump
    for upstream in ("docker.io", "registry.k8s.io", "quay.io", "ghcr.io"):
        hosts_toml = in_host(name, "cat", f"/etc/containerd/certs.d/{upstream}/hosts.toml").stdout
        assert f'server = "https://{REGISTRY}"' in hosts_toml
        assert f'[host."https://{REGISTRY}/v2/{upstream}"]' in hosts_toml
    # containerd resolves docker.io through the mirror only (the mirror does not exist here: the error names it)
    pull = in_host(name, "ctr", "images", "pull", "--hosts-dir", "/etc/containerd/certs.d", "docker.io/library/busybox:1.36")
    assert pull.returncode != 0
    assert REGISTRY in pull.stderr and "registry-1.docker.io" not in pull.stderr, pull.stderr
    # kernel modules and forwarding at boot (not applied inside a container: the kernel is the host's)
    assert in_host(name, "cat", "/etc/modules-load.d/govcloud-containerd.conf").stdout.split() == ["overlay", "br_netfilter"]
    assert "net.ipv4.ip_forward = 1" in in_host(name, "cat", "/etc/sysctl.d/91-govcloud-containerd.conf").stdout

    started = time.monotonic()
    second = _converge(inventory, host, tmp_path / "run2")
    second_s = time.monotonic() - started
    assert second.ok, [f.line() for f in second.failures]
    assert second.hosts["dc-cp-1"].changed == 0, json.dumps(second.hosts["dc-cp-1"].__dict__)
    print(f"container_runtime: first run {first_s:.1f}s, idempotent re-run {second_s:.1f}s")
