"""The ``harden`` playbook (roles ``common`` and ``ca_trust``) converged for real, twice, through ansible-runner.

The host is a throwaway podman container booted with systemd and sshd, reached over SSH like a real
VM (``containerhosts.py``: the project's base image with the packages a cloud image carries, on a podman
network inside the test stack's app tier). The inventory comes from a hosts file (the handed-over-VM path).
The first run connects as the cloud-init user ``debian``; the second as the administrator the first
run created, through the hardened sshd and behind the nftables firewall it loaded — and changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerhosts import (
    GATEWAY,
    MIRROR_VARS,
    Fleet,
    connection_vars,
    host_image,
    hosts_file,
    in_host,
    model,
    pem,
    self_signed_ca,
    start_hosts,
)

from infra.hosts import build_inventory
from infra.hosts.runner import RunResult, run_playbook

pytestmark = pytest.mark.podman


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = start_hosts(host_image(tmp_path_factory.mktemp("images")), 1, "harden", tmp_path_factory.mktemp("ssh"))
    try:
        yield fleet
    finally:
        fleet.remove()


def _converge(inventory: Path, host: Fleet, user: str, root: str, tmp: Path) -> RunResult:
    extravars = {
        **connection_vars(host, user),
        **MIRROR_VARS,
        "common_firewall_extra_rules": [
            {"proto": "tcp", "ports": "22", "sources": [f"{GATEWAY}/32"], "comment": "test controller"}
        ],
        "ca_trust_certificates": [{"name": "govcloud-hosts-it-root", "pem": root}],
    }
    return run_playbook("harden.yml", inventory, extravars=extravars, limit="dc-cp-1", private_data_dir=tmp)


def test_harden_converges_and_is_idempotent(host: Fleet, tmp_path: Path) -> None:
    inventory = build_inventory(model(host.pub), hosts=hosts_file(tmp_path / "hosts", host.hosts, [])).write(
        tmp_path / "inventory.yml")
    root = pem(self_signed_ca("govcloud hosts-it root")[0])
    name = host.hosts[0].name

    started = time.monotonic()
    first = _converge(inventory, host, "debian", root, tmp_path / "run1")
    first_s = time.monotonic() - started
    assert first.ok, [f.line() for f in first.failures]
    assert first.hosts["dc-cp-1"].changed > 0

    # SSH hardening: effective sshd settings
    sshd = in_host(name, "sshd", "-T").stdout.splitlines()
    for line in ("permitrootlogin no", "passwordauthentication no", "allowgroups govcloud-ssh",
                 "allowtcpforwarding no", "maxauthtries 3"):
        assert line in sshd
    # users: the administrator with the stack's key, sudo and the SSH group
    groups = in_host(name, "id", "-nG", "govcloud").stdout.split()
    assert {"sudo", "govcloud-ssh"} <= set(groups)
    assert in_host(name, "cat", "/home/govcloud/.ssh/authorized_keys").stdout.strip() == host.pub
    # sysctl: the file is there and every key is known to the kernel
    sysctl = in_host(name, "cat", "/etc/sysctl.d/90-govcloud.conf").stdout
    assert "kernel.kptr_restrict = 2" in sysctl and "net.ipv4.tcp_syncookies = 1" in sysctl
    # nftables: rendered from the model, valid, and loaded
    assert in_host(name, "nft", "-c", "-f", "/etc/nftables.conf").returncode == 0
    loaded = in_host(name, "nft", "list", "table", "inet", "govcloud").stdout
    assert "policy drop" in loaded
    assert "ip saddr 10.213.48.0/24 tcp dport 22 accept" in loaded  # SSH from the bastion's tier (mgmt)
    assert "ip saddr 10.213.16.0/20 tcp dport 2379-2380 accept" in loaded  # etcd among the app tier
    assert f"ip saddr {GATEWAY} tcp dport 22 accept" in loaded
    # apt: the mirror is the only source; unattended security upgrades configured
    sources = in_host(name, "cat", "/etc/apt/sources.list.d/govcloud.sources").stdout
    assert "URIs: http://deb.debian.org/debian\n" in sources
    assert "Debian-Security" in in_host(name, "cat", "/etc/apt/apt.conf.d/50unattended-upgrades").stdout
    # CA trust: the platform root is in the system bundle
    bundle = in_host(name, "cat", "/etc/ssl/certs/ca-certificates.crt").stdout
    assert root.strip().splitlines()[1] in bundle

    started = time.monotonic()
    second = _converge(inventory, host, "govcloud", root, tmp_path / "run2")  # the admin the first run created
    second_s = time.monotonic() - started
    assert second.ok, [f.line() for f in second.failures]
    assert second.hosts["dc-cp-1"].changed == 0, json.dumps(second.hosts["dc-cp-1"].__dict__)
    print(f"harden: first run {first_s:.1f}s, idempotent re-run {second_s:.1f}s")
