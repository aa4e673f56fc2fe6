"""The ``etcd_backup`` role converged for real against a host running a real etcd, twice, and its job run.

The host is a container (systemd, sshd) with Debian's etcd serving TLS on 127.0.0.1:2379 with kubeadm's
certificate layout (``/etc/kubernetes/pki/etcd``) — the test's stand-in for kubeadm's etcd static pod.
The artifact mirror is an HTTP server on the controller carrying the etcd tools tarball (assembled from
Debian's ``etcd-client`` package, as upstream's release is out of reach); apt uses this machine's Debian
mirror. The object storage is a restic repository on the controller, bind-mounted into the host (the test
cloud's Swift listens on the controller's loopback only, out of the containers' reach).

After the converge, the job runs exactly as cron would run it (the command from ``/etc/cron.d``); the
snapshot is then taken back out of the repository *on the controller* with restic, restored with
``etcdctl snapshot restore`` into a fresh data directory, and a second etcd serving that directory answers
with the key written before the backup.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerhosts import (
    MIRROR_VARS,
    Fleet,
    artifact_mirror,
    connection_vars,
    host_image,
    hosts_file,
    in_host,
    leaf,
    model,
    pem,
    self_signed_ca,
    start_hosts,
)

from infra.hosts import build_inventory
from infra.hosts.runner import RunResult, run_playbook

pytestmark = pytest.mark.podman

PKI = "/etc/kubernetes/pki/etcd"
STORE = "/srv/objectstore"  # the controller's restic repository folder, inside the host
PASSWORD = "hosts-it-restic"


@pytest.fixture(scope="module")
def mirror_vars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with artifact_mirror(tmp_path_factory.mktemp("mirror")) as found:
        yield found


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("objectstore")


@pytest.fixture(scope="module")
def etcd_host(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Iterator[Fleet]:
    image = host_image(tmp_path_factory.mktemp("images"), extra="etcd-server", post="systemctl disable etcd")
    fleet = start_hosts(image, 1, "etcd", tmp_path_factory.mktemp("ssh"), volumes=(f"{store}:{STORE}",))
    try:
        _start_etcd(fleet.hosts[0].name)
        yield fleet
    finally:
        fleet.remove()


def _put(name: str, path: str, text: str, owner: str = "root", mode: str = "0600") -> None:
    proc = subprocess.run(["podman", "exec", "-i", name, "sh", "-c", f"cat > {path} && chown {owner}: {path} && chmod {mode} {path}"],
                          input=text, text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def _start_etcd(name: str) -> None:
    """Debian's etcd unit with kubeadm's certificate layout: TLS and client certificates required."""
    ca = self_signed_ca("etcd-ca")
    in_host(name, "install", "-d", "-m", "0755", PKI)
    _put(name, f"{PKI}/ca.crt", pem(ca[0]), mode="0644")
    cert, key = leaf(ca, "etcd-server", server=True, ips=("127.0.0.1",))
    _put(name, f"{PKI}/server.crt", cert, owner="etcd", mode="0644")
    _put(name, f"{PKI}/server.key", key, owner="etcd")
    cert, key = leaf(ca, "kube-etcd-healthcheck-client", server=False)
    _put(name, f"{PKI}/healthcheck-client.crt", cert, mode="0644")
    _put(name, f"{PKI}/healthcheck-client.key", key)
    _put(name, "/etc/default/etcd", "\n".join([
        "ETCD_NAME=dc-cp-1", "ETCD_DATA_DIR=/var/lib/etcd/default",
        "ETCD_LISTEN_CLIENT_URLS=https://127.0.0.1:2379", "ETCD_ADVERTISE_CLIENT_URLS=https://127.0.0.1:2379",
        f"ETCD_CERT_FILE={PKI}/server.crt", f"ETCD_KEY_FILE={PKI}/server.key",
        f"ETCD_TRUSTED_CA_FILE={PKI}/ca.crt", "ETCD_CLIENT_CERT_AUTH=true", "",
    ]), mode="0644")
    started = in_host(name, "systemctl", "start", "etcd")  # Type=notify: returns once etcd serves
    assert started.returncode == 0, started.stderr + in_host(name, "journalctl", "-u", "etcd", "--no-pager").stdout


def etcdctl(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return in_host(name, "env", "ETCDCTL_API=3", "/usr/local/bin/etcdctl", "--endpoints=https://127.0.0.1:2379",
                   f"--cacert={PKI}/ca.crt", f"--cert={PKI}/healthcheck-client.crt",
                   f"--key={PKI}/healthcheck-client.key", *args)


def _converge(inventory: Path, fleet: Fleet, extravars: dict, tmp: Path) -> RunResult:
    return run_playbook("bootstrap.yml", inventory, tags="etcd_backup", limit="dc-cp-1", private_data_dir=tmp,
                        extravars={**connection_vars(fleet), **MIRROR_VARS, **extravars})


def _scheduled_command(name: str) -> str:
    """The command the cron entry runs (``m h dom mon dow user command``), to run it as cron would."""
    lines = [ln for ln in in_host(name, "cat", "/etc/cron.d/govcloud-etcd-backup").stdout.splitlines()
             if ln.strip() and not ln.startswith("#")]
    (entry,) = lines
    fields = entry.split(None, 6)
    assert fields[5] == "root"
    return fields[6]


def _backup_roundtrip(fleet: Fleet, tmp_path: Path, repo_vars: dict, restic_env: dict[str, str]) -> None:
    name = fleet.hosts[0].name
    inventory = build_inventory(model(fleet.pub), hosts=hosts_file(tmp_path / "hosts", fleet.hosts, [])).write(
        tmp_path / "inventory.yml")
    started = time.monotonic()
    first = _converge(inventory, fleet, repo_vars, tmp_path / "run1")
    first_s = time.monotonic() - started
    assert first.ok, [f.line() for f in first.failures]
    assert first.hosts["dc-cp-1"].changed > 0
    started = time.monotonic()
    second = _converge(inventory, fleet, repo_vars, tmp_path / "run2")
    second_s = time.monotonic() - started
    assert second.ok, [f.line() for f in second.failures]
    assert second.hosts["dc-cp-1"].changed == 0, json.dumps(second.hosts["dc-cp-1"].__dict__)

    # the credentials file is root's only; the job is valid bash on the model's schedule
    assert in_host(name, "stat", "-c", "%a %U", "/etc/govcloud/etcd-backup.env").stdout.split() == ["600", "root"]
    command = _scheduled_command(name)

    marker = f"backup-{os.urandom(4).hex()}"
    put = etcdctl(name, "put", "/registry/govcloud/hosts-it", marker)
    assert put.returncode == 0, put.stderr
    job = in_host(name, "sh", "-c", command)  # as cron runs it (its output appended to the job's log)
    log = in_host(name, "cat", "/var/log/govcloud-etcd-backup.log").stdout
    assert job.returncode == 0, log
    assert "shipped to" in log, log

    # what the object storage holds, read back on the controller
    env = {**os.environ, **restic_env, "RESTIC_PASSWORD": PASSWORD}
    snaps = json.loads(subprocess.run(["restic", "snapshots", "--json", "--tag", "etcd"], env=env, check=True,
                                      capture_output=True, text=True).stdout)
    assert [s["hostname"] for s in snaps] == ["dc-cp-1"]
    assert "stack=hostsit" in snaps[0]["tags"]
    restored = tmp_path / "restored"
    subprocess.run(["restic", "restore", "latest", "--target", str(restored)], env=env, check=True, capture_output=True)
    (snapshot,) = restored.rglob("etcd-*.db")

    # restore it on the host into a fresh data directory and serve it: the key is there
    subprocess.run(["podman", "cp", str(snapshot), f"{name}:/root/restored.db"], check=True)
    status = in_host(name, "env", "ETCDCTL_API=3", "/usr/local/bin/etcdctl", "snapshot", "status",
                     "/root/restored.db", "--write-out=json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totalKey"] > 0
    restore = in_host(name, "env", "ETCDCTL_API=3", "/usr/local/bin/etcdctl", "snapshot", "restore", "/root/restored.db",
                      "--name", "restored", "--data-dir", "/var/lib/etcd-restored",
                      "--initial-cluster", "restored=http://127.0.0.1:12380",
                      "--initial-advertise-peer-urls", "http://127.0.0.1:12380")
    assert restore.returncode == 0, restore.stderr
    serve = in_host(name, "systemd-run", "--unit", "etcd-restored", "--property", "Type=notify",
                    "/usr/bin/etcd", "--name", "restored", "--data-dir", "/var/lib/etcd-restored",
                    "--listen-client-urls", "http://127.0.0.1:12379", "--advertise-client-urls", "http://127.0.0.1:12379",
                    "--listen-peer-urls", "http://127.0.0.1:12380")
    assert serve.returncode == 0, serve.stderr
    got = in_host(name, "env", "ETCDCTL_API=3", "/usr/local/bin/etcdctl", "--endpoints=http://127.0.0.1:12379",
                  "--command-timeout=30s", "get", "/registry/govcloud/hosts-it", "--print-value-only")
    assert got.stdout.strip() == marker, got.stderr
    print(f"etcd_backup: first run {first_s:.1f}s, idempotent re-run {second_s:.1f}s")


def test_etcd_backup_ships_a_snapshot_that_restores(etcd_host: Fleet, mirror_vars: dict[str, str],
                                                    store: Path, tmp_path: Path) -> None:
    repo_vars = {
        **mirror_vars,
        "etcd_backup_repository": f"{STORE}/etcd",
        "etcd_backup_restic_password": PASSWORD,
    }
    _backup_roundtrip(etcd_host, tmp_path, repo_vars, {"RESTIC_REPOSITORY": str(store / "etcd")})

