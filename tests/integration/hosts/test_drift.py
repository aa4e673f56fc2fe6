"""Drift: a no-change re-run checks the hosts' real state, and repairs what was changed behind its back.

Each role's first task compares everything the role manages with the host in one module run
(``govcloud_state``) and the role's ordinary tasks run only where something differs — so a re-run on hosts
in place is one module run per role, and this test proves the check is a check, not a stamp: two container
hosts (a control plane node and a worker) converged with ``site.yml`` (without kubeadm), then on the control
plane node only, one thing per role is changed the way an operator or an intruder would (a managed file
edited, a service disabled or stopped, a trusted root deleted, the credentials file opened up). The next
run names exactly those differences on that host and none on the other, changes that host only and puts
everything back (handlers included: the trust store is rebuilt); ``--check`` before it reports the same
without touching anything; a further run changes nothing.

Not drifted here: running kernel parameters (``/proc/sys`` is read-only in a container and the kernel is the
host's; on a VM the check compares the running values and the role re-applies its files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from containerhosts import (
    GATEWAY,
    MIRROR_VARS,
    Fleet,
    artifact_mirror,
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

ROOT_NAME = "govcloud-drift-root"
ROOT_FILE = f"/usr/local/share/ca-certificates/govcloud/{ROOT_NAME}.crt"
SSHD = "/etc/ssh/sshd_config.d/05-govcloud-hardening.conf"
HOSTS_TOML = "/etc/containerd/certs.d/docker.io/hosts.toml"
ENV = "/etc/govcloud/etcd-backup.env"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    hosts = start_hosts(host_image(tmp_path_factory.mktemp("images")), 2, "drift", tmp_path_factory.mktemp("ssh"))
    try:
        yield hosts
    finally:
        hosts.remove()


def _drift(pdd: Path) -> dict[tuple[str, str], list[str]]:
    """(host, role) -> what the role's check found, from the run's job events."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in pdd.glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        data: dict[str, Any] = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and str(data.get("task", "")).startswith("Compare the host"):
            found[(data["host"], data.get("role", "?"))] = data["res"]["drift"]
    return found


def test_drift_on_one_host_is_found_and_repaired_there_only(fleet: Fleet, tmp_path: Path) -> None:
    cp, worker = fleet.hosts
    root = pem(self_signed_ca("govcloud drift root")[0])
    with artifact_mirror(tmp_path / "artifacts") as mirror:
        inventory = build_inventory(model(fleet.pub), hosts=hosts_file(tmp_path / "hosts", [cp], [worker])).write(
            tmp_path / "inventory.yml")
        extravars = {
            **MIRROR_VARS, **mirror,
            "common_firewall_extra_rules": [
                {"proto": "tcp", "ports": "22", "sources": [f"{GATEWAY}/32"], "comment": "test controller"}],
            "ca_trust_certificates": [{"name": ROOT_NAME, "pem": root}],
            "etcd_backup_restic_password": "drift",
        }

        def converge(name: str, user: str = "govcloud", check: bool = False) -> tuple[RunResult, Path]:
            pdd = tmp_path / name
            started = time.monotonic()
            result = run_playbook("site.yml", inventory, skip_tags="kubernetes", limit="k8s_cluster", check=check,
                                  private_data_dir=pdd, extravars={**connection_vars(fleet, user), **extravars})
            print(f"drift test, {name}: {time.monotonic() - started:.1f}s, changed "
                  f"{ {h: r.changed for h, r in result.hosts.items()} }")
            assert result.ok, [f.line() for f in result.failures]
            return result, pdd

        converge("first", user="debian")
        again, pdd = converge("again")
        assert again.changed == 0
        assert all(d == [] for d in _drift(pdd).values()) and len(_drift(pdd)) == 7  # 4 roles on cp, 3 on the worker

        # one change per role, on the control plane node only
        in_host(cp.name, "sh", "-c", f"echo 'X11Forwarding yes' >> {SSHD}")
        in_host(cp.name, "systemctl", "disable", "--quiet", "chrony")
        in_host(cp.name, "sh", "-c", f"rm -f {ROOT_FILE} && update-ca-certificates --fresh >/dev/null")
        in_host(cp.name, "sh", "-c", f"echo '# edited' >> {HOSTS_TOML}")
        in_host(cp.name, "systemctl", "stop", "containerd")
        in_host(cp.name, "chmod", "0644", ENV)
        want = {
            ("dc-cp-1", "common"): [f"file {SSHD}: content differs", "service chrony: not enabled (disabled)"],
            ("dc-cp-1", "ca_trust"): [f"file {ROOT_FILE}: missing"],
            ("dc-cp-1", "container_runtime"): [f"file {HOSTS_TOML}: content differs",
                                               "service containerd: not running (inactive)"],
            ("dc-cp-1", "etcd_backup"): [f"file {ENV}: mode 0644 (want 0600)"],
            ("dc-w-1", "common"): [], ("dc-w-1", "ca_trust"): [], ("dc-w-1", "container_runtime"): [],
        }

        # --check: the same differences reported, nothing touched
        checked, pdd = converge("check", check=True)
        assert {k: sorted(v) for k, v in _drift(pdd).items()} == {k: sorted(v) for k, v in want.items()}
        assert checked.hosts["dc-cp-1"].changed > 0 and checked.hosts["dc-w-1"].changed == 0
        assert in_host(cp.name, "stat", "-c", "%a", ENV).stdout.strip() == "644"
        bundle = in_host(cp.name, "cat", "/etc/ssl/certs/ca-certificates.crt").stdout
        assert root.strip().splitlines()[1] not in bundle

        repaired, pdd = converge("repair")
        assert {k: sorted(v) for k, v in _drift(pdd).items()} == {k: sorted(v) for k, v in want.items()}
        assert repaired.hosts["dc-cp-1"].changed > 0
        assert repaired.hosts["dc-w-1"].changed == 0
        # put back, handlers included
        assert "X11Forwarding yes" not in in_host(cp.name, "cat", SSHD).stdout
        assert in_host(cp.name, "sshd", "-T").stdout.count("x11forwarding no") == 1
        assert in_host(cp.name, "systemctl", "is-enabled", "chrony").stdout.strip() == "enabled"
        assert in_host(cp.name, "cat", ROOT_FILE).stdout.strip() == root.strip()
        bundle = in_host(cp.name, "cat", "/etc/ssl/certs/ca-certificates.crt").stdout
        assert root.strip().splitlines()[1] in bundle  # update-ca-certificates ran
        assert "# edited" not in in_host(cp.name, "cat", HOSTS_TOML).stdout
        assert in_host(cp.name, "systemctl", "is-active", "containerd").stdout.strip() == "active"
        assert in_host(cp.name, "stat", "-c", "%a", ENV).stdout.strip() == "600"

        settled, pdd = converge("settled")
        assert settled.changed == 0
        assert all(d == [] for d in _drift(pdd).values())
