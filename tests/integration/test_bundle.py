"""An air-gapped bundle brings a stack up in a network namespace with only loopback.

Bundle a postgres-only stack, drop its image tag from podman, `bundle install`, then `govcloud up`
inside a fresh network namespace (`ip netns add`, entered with `nsenter --net`): the image comes from the bundle (not rebuilt: a rebuild
would need the network and print an "image localhost/govcloud/..." line) and the stack becomes ready,
with no packet sent to any address outside the host (every attempt is rejected and counted).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from infra.bundle.build import image_refs
from infra.contract import load_components
from infra.manifests.workloads import stack_components
from infra.model import load_stack
from tests.integration.conftest import govcloud

pytestmark = pytest.mark.podman


def in_netns(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    # nsenter --net: only the network namespace (`ip netns exec` also remounts /sys, losing podman's cgroups)
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "infra.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "300"}, check=False, timeout=300)


def netns_exec(ns: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=True).stdout


def outbound_attempts(ns: str) -> int:
    """Packets the namespace tried to send anywhere but loopback (rejected and counted by its own netfilter)."""
    count = 0
    for tool in ("iptables", "ip6tables"):
        for line in netns_exec(ns, tool, "-L", "OUTPUT", "-v", "-n", "-x").splitlines():
            if "REJECT" in line:
                count += int(line.split()[0])
    return count


def isolate(ns: str) -> None:
    """Only loopback: every other destination is routed to lo, where netfilter rejects (fast) and counts it."""
    netns_exec(ns, "ip", "link", "set", "lo", "up")
    for family, tool, local in (("-4", "iptables", "127.0.0.0/8"), ("-6", "ip6tables", "::1/128")):
        netns_exec(ns, "ip", family, "route", "add", "default", "dev", "lo")
        netns_exec(ns, tool, "-A", "OUTPUT", "!", "-d", local, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
        netns_exec(ns, tool, "-A", "OUTPUT", "!", "-d", local, "-j", "REJECT")


def test_bundle_install_then_up_with_no_network(stack_factory, tmp_path: Path) -> None:
    assert os.geteuid() == 0, "needs root: rootful podman and `ip netns`"
    only_postgres = {name: {"enabled": name == "postgres"} for name in load_components()}
    stack = stack_factory("bndl", 620, only_postgres)
    archive = tmp_path / "bundle.tar.zst"
    govcloud("bundle", "create", "-s", stack, "-o", str(archive), "--no-host-packages")
    ok = govcloud("bundle", "verify", str(archive))
    assert "ok" in ok.stdout

    ref = str(image_refs(stack_components(load_stack(stack)))["postgres"])
    # drop the tag (the image itself may be in use by other stacks' containers: then untag only)
    if subprocess.run(["podman", "rmi", ref], capture_output=True, check=False).returncode != 0:
        subprocess.run(["podman", "untag", ref, ref], capture_output=True, check=True)
    assert subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 1

    installed = govcloud("bundle", "install", str(archive), "--workdir", str(tmp_path / "unpacked"))
    assert f"loaded {ref}" in installed.stdout, installed.stdout
    assert subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0

    ns = f"govcloud-bundle-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        isolate(ns)
        assert len(netns_exec(ns, "ip", "-o", "link").splitlines()) == 1, "the namespace has more than loopback"
        # the check counts: a connection attempt out of the namespace is refused and counted
        probe = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c",
                                "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)"],
                               capture_output=True, text=True, check=False)
        assert probe.returncode != 0 and outbound_attempts(ns) > 0, probe.stderr
        netns_exec(ns, "iptables", "-Z", "OUTPUT")
        netns_exec(ns, "ip6tables", "-Z", "OUTPUT")
        assert outbound_attempts(ns) == 0
        up = in_netns(ns, "up", "-s", stack)
        assert up.returncode == 0, f"up exited {up.returncode}:\n{up.stdout}\n{up.stderr}"
        assert "image localhost/govcloud" not in up.stderr + up.stdout, up.stderr
        assert "debootstrap" not in up.stderr and "python runtime" not in up.stderr, up.stderr
        status = in_netns(ns, "status", "-s", stack)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "postgres" in status.stdout
        assert outbound_attempts(ns) == 0, "something in up/status tried to reach an address outside the host"
        outside = govcloud("status", "-s", stack, check=False)  # from the host's network: not reachable
        assert outside.returncode == 1, outside.stdout
    finally:
        govcloud("down", "-s", stack, "--purge", check=False)
        subprocess.run(["ip", "netns", "del", ns], check=False)
