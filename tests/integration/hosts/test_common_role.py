"""The ``harden`` playbook (roles ``common`` and ``ca_trust``) converged for real, twice, through ansible-runner.

The host is a throwaway podman container booted with systemd and sshd, reached over SSH like a real
VM: built from the project's base image with the packages a cloud image carries, on a podman network
inside the test stack's app tier. The inventory comes from a hosts file (the handed-over-VM path).
The first run connects as the cloud-init user ``debian``; the second as the administrator the first
run created, through the hardened sshd and behind the nftables firewall it loaded — and changes nothing.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.hosts import build_inventory
from infra.hosts.runner import RunResult, run_playbook
from infra.images.build import ImageRef, _digest, build_base, exists
from infra.model import StackModel

pytestmark = pytest.mark.podman

NETWORK = "govcloud-hosts-it"
SUBNET = "10.213.16.0/24"  # inside the test stack's app tier 10.213.16.0/20
GATEWAY = "10.213.16.1"  # the controller as the host sees it
LABEL = "govcloud-test=hosts"
PACKAGES = (
    "systemd systemd-sysv openssh-server sudo python3-apt nftables auditd chrony unattended-upgrades "
    "apt-listchanges ca-certificates procps iproute2"
)
CONTAINERFILE = f"""\
FROM {{base}}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {PACKAGES} \\
 && ssh-keygen -A \\
 && systemctl mask systemd-logind.service getty.target console-getty.service systemd-timesyncd.service \\
 && useradd -m -s /bin/bash debian \\
 && echo 'debian ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/90-cloud-init-users \\
 && chmod 0440 /etc/sudoers.d/90-cloud-init-users
CMD ["/sbin/init"]
"""


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=300)


def in_host(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", name, *cmd, check=False)


@pytest.fixture(scope="module")
def host_image(tmp_path_factory: pytest.TempPathFactory) -> ImageRef:
    base = build_base(lambda msg: None)
    text = CONTAINERFILE.format(base=base)
    ref = ImageRef("hosts-testhost", _digest(text))
    if not exists(ref):
        ctx = tmp_path_factory.mktemp("hostimage")
        (ctx / "Containerfile").write_text(text, encoding="utf-8")
        podman("build", "-q", "--network", "host", "-t", str(ref), str(ctx))
    return ref


@pytest.fixture(scope="module")
def host(host_image: ImageRef, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for stale in podman("ps", "-aq", "--filter", f"label={LABEL}").stdout.split():
        podman("rm", "-f", "-t", "0", stale, check=False)
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    keydir = tmp_path_factory.mktemp("ssh")
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hosts-it", "-f", str(key)], check=True)
    name = f"govcloud-hosts-it-{secrets.token_hex(3)}"
    podman("run", "-d", "--name", name, "--label", LABEL, "--network", NETWORK, "--systemd=always",
           "--cap-add", "NET_ADMIN", "--cap-add", "AUDIT_WRITE", str(host_image), "/sbin/init")
    try:
        for _ in range(200):  # until PID 1 answers (a few exec round trips); then --wait blocks until booted
            booted = in_host(name, "systemctl", "is-system-running", "--wait")
            if booted.stdout.strip():
                break
        assert booted.stdout.strip() in ("running", "degraded"), booted.stdout + booted.stderr
        pub = key.with_suffix(".pub").read_text(encoding="utf-8").strip()
        podman("exec", name, "sh", "-c", "install -d -m 700 -o debian -g debian /home/debian/.ssh && "
               f"echo '{pub}' > /home/debian/.ssh/authorized_keys && chown debian: /home/debian/.ssh/authorized_keys")
        fmt = '{{(index .NetworkSettings.Networks "' + NETWORK + '").IPAddress}}'
        address = podman("inspect", name, "--format", fmt)
        yield {"name": name, "address": address.stdout.strip(), "key": str(key), "pub": pub}
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def _model(pub: str) -> StackModel:
    return StackModel.model_validate({
        "name": "hostsit", "target": "openstack", "domain": "hostsit.example.gov",
        "network": {"cidr": "10.213.0.0/16", "dmz": "10.213.0.0/24", "app": "10.213.16.0/20",
                    "data": "10.213.32.0/24", "mgmt": "10.213.48.0/24", "dnsNameservers": ["10.213.48.2"]},
        "cluster": {"sshPublicKeys": [pub]},
    })


def _root_ca() -> str:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "govcloud hosts-it root")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _converge(inventory: Path, host: dict[str, str], user: str, pem: str, tmp: Path) -> RunResult:
    extravars = {
        "ansible_user": user,
        "ansible_ssh_private_key_file": host["key"],
        # reached directly (the test is its own bastion); the host keys are throwaway
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        # the Debian mirror stands in for the data centre's local mirror
        "govcloud_apt_mirror": "http://deb.debian.org/debian",
        "govcloud_apt_security_mirror": "http://deb.debian.org/debian-security",
        "common_firewall_extra_rules": [
            {"proto": "tcp", "ports": "22", "sources": [f"{GATEWAY}/32"], "comment": "test controller"}
        ],
        "ca_trust_certificates": [{"name": "govcloud-hosts-it-root", "pem": pem}],
    }
    return run_playbook("harden.yml", inventory, extravars=extravars, limit="dc-cp-1", private_data_dir=tmp)


def test_harden_converges_and_is_idempotent(host: dict[str, str], tmp_path: Path) -> None:
    model = _model(host["pub"])
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(
        "[bastion]\ndc-bastion 10.213.48.5 private=10.213.48.5\n"
        f"[control_plane]\ndc-cp-1 {host['address']}\n"
        "[workers]\ndc-w-1 10.213.17.20 pool=general\n"
        "[kubernetes]\napi_endpoint = https://10.213.0.140:6443\n",
        encoding="utf-8",
    )
    inventory = build_inventory(model, hosts=hosts_file).write(tmp_path / "inventory.yml")
    pem = _root_ca()
    name = host["name"]

    started = time.monotonic()
    first = _converge(inventory, host, "debian", pem, tmp_path / "run1")
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
    assert in_host(name, "cat", "/home/govcloud/.ssh/authorized_keys").stdout.strip() == host["pub"]
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
    assert pem.strip().splitlines()[1] in bundle

    started = time.monotonic()
    second = _converge(inventory, host, "govcloud", pem, tmp_path / "run2")  # the admin the first run created
    second_s = time.monotonic() - started
    assert second.ok, [f.line() for f in second.failures]
    assert second.hosts["dc-cp-1"].changed == 0, json.dumps(second.hosts["dc-cp-1"].__dict__)
    print(f"harden: first run {first_s:.1f}s, idempotent re-run {second_s:.1f}s")
