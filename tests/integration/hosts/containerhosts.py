"""Podman containers as hosts: booted with systemd and sshd, reached over SSH like a real VM.

Shared by the hosts integration tests and ``bench/hosts_converge.py``. The image is built from the
project's base image with the packages a Debian cloud image carries (plus any ``extra`` packages a test
needs for its own setup), on a podman network inside the test stack's app tier. Every container carries
a label naming who started it, so concurrent users never remove each other's hosts.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import io
import secrets
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.images.build import ImageRef, _digest, build_base, exists
from infra.model import StackModel

NETWORK = "govcloud-hosts-it"
SUBNET = "10.213.16.0/24"  # inside the test stack's app tier 10.213.16.0/20
GATEWAY = "10.213.16.1"  # the controller as the hosts see it
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
# A test's own setup on top of the cloud image (never something a role is meant to install)
EXTRA = """\
FROM {image}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {packages}{post}
"""
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


def in_host(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", name, *cmd, check=False)


def _build(name: str, text: str, workdir: Path) -> ImageRef:
    ref = ImageRef(name, _digest(text))
    if not exists(ref):
        ctx = workdir / name
        ctx.mkdir(parents=True, exist_ok=True)
        (ctx / "Containerfile").write_text(text, encoding="utf-8")
        podman("build", "-q", "--network", "host", "-t", str(ref), str(ctx), timeout=900)
    return ref


def host_image(workdir: Path, extra: str = "", post: str = "") -> ImageRef:
    """The cloud-image stand-in, optionally with ``extra`` packages (and a ``post`` shell step) on top."""
    ref = _build("hosts-testhost", CONTAINERFILE.format(base=build_base(lambda msg: None)), workdir)
    if not extra:
        return ref
    text = EXTRA.format(image=ref, packages=extra, post=f" \\\n && {post}" if post else "")
    return _build("hosts-testhost-" + _digest(extra)[:6], text, workdir)


@dataclass
class Host:
    name: str
    address: str


@dataclass
class Fleet:
    """N running container hosts that accept ``debian`` with ``key`` over SSH."""

    label: str
    key: Path
    pub: str
    hosts: list[Host]

    def remove(self) -> None:
        for host in self.hosts:
            podman("rm", "-f", "-t", "0", host.name, check=False)


def remove_labelled(label: str) -> None:
    for stale in podman("ps", "-aq", "--filter", f"label=govcloud-test={label}").stdout.split():
        podman("rm", "-f", "-t", "0", stale, check=False)


def start_hosts(image: ImageRef, count: int, label: str, keydir: Path, volumes: tuple[str, ...] = ()) -> Fleet:
    """Start ``count`` hosts (removing hosts a previous run with the same label left behind)."""
    remove_labelled(label)
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK, check=False)
    key = keydir / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hosts-it", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text(encoding="utf-8").strip()
    fleet = Fleet(label, key, pub, [])
    try:
        names = []
        for _ in range(count):
            name = f"govcloud-hosts-it-{label}-{secrets.token_hex(3)}"
            mounts = [arg for v in volumes for arg in ("-v", v)]
            podman("run", "-d", "--name", name, "--label", f"govcloud-test={label}", "--network", NETWORK,
                   "--systemd=always", "--cap-add", "NET_ADMIN", "--cap-add", "AUDIT_WRITE", *mounts,
                   str(image), "/sbin/init")
            names.append(name)
            fleet.hosts.append(Host(name, ""))
        fmt = '{{(index .NetworkSettings.Networks "' + NETWORK + '").IPAddress}}'
        for host in fleet.hosts:
            for _ in range(200):  # until PID 1 answers (a few exec round trips); then --wait blocks until booted
                booted = in_host(host.name, "systemctl", "is-system-running", "--wait")
                if booted.stdout.strip():
                    break
            assert booted.stdout.strip() in ("running", "degraded"), booted.stdout + booted.stderr
            podman("exec", host.name, "sh", "-c", "install -d -m 700 -o debian -g debian /home/debian/.ssh && "
                   f"echo '{pub}' > /home/debian/.ssh/authorized_keys && chown debian: /home/debian/.ssh/authorized_keys")
            host.address = podman("inspect", host.name, "--format", fmt).stdout.strip()
    except BaseException:
        fleet.remove()
        raise
    return fleet


def model(pub: str) -> StackModel:
    """The test stack: its app tier holds the podman network."""
    return StackModel.model_validate({
        "name": "hostsit", "target": "openstack", "domain": "hostsit.example.gov",
        "network": {"cidr": "10.213.0.0/16", "dmz": "10.213.0.0/24", "app": "10.213.16.0/20",
                    "data": "10.213.32.0/24", "mgmt": "10.213.48.0/24", "dnsNameservers": ["10.213.48.2"]},
        "cluster": {"sshPublicKeys": [pub]},
    })


def hosts_file(path: Path, control_plane: list[Host], workers: list[Host]) -> Path:
    """A handed-over-VM hosts file; without worker containers a placeholder worker (runs are then limited)."""
    workers = workers or [Host("placeholder", "10.213.17.20")]
    lines = ["[bastion]", "dc-bastion 10.213.48.5 private=10.213.48.5", "[control_plane]"]
    lines += [f"dc-cp-{i} {h.address}" for i, h in enumerate(control_plane, 1)]
    lines += ["[workers]"] + [f"dc-w-{i} {h.address} pool=general" for i, h in enumerate(workers, 1)]
    lines += ["[kubernetes]", "api_endpoint = https://10.213.0.140:6443"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def connection_vars(fleet: Fleet, user: str = "debian") -> dict[str, str]:
    # reached directly (the test is its own bastion); the host keys are throwaway
    return {"ansible_user": user, "ansible_ssh_private_key_file": str(fleet.key), "ansible_ssh_common_args": SSH_ARGS}


# The Debian mirror this machine uses stands in for the data centre's local mirror
MIRROR_VARS = {
    "govcloud_apt_mirror": "http://deb.debian.org/debian",
    "govcloud_apt_security_mirror": "http://deb.debian.org/debian-security",
}


def self_signed_ca(common_name: str) -> tuple[object, object]:
    """(certificate, private key) of a throwaway CA valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def pem(obj: object) -> str:
    from cryptography.hazmat.primitives import serialization

    if hasattr(obj, "public_bytes"):
        return obj.public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[attr-defined]
    return obj.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def leaf(ca: tuple[object, object], common_name: str, *, server: bool, ips: tuple[str, ...] = ()) -> tuple[str, str]:
    """(certificate PEM, key PEM) signed by ``ca``, for a TLS server (with IP SANs) or client."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())  # type: ignore[attr-defined]
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if ips:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return pem(cert), pem(key)


ETCD_VERSION = "v3.4.23"  # Debian bookworm's etcd


def etcd_tarball(workdir: Path) -> bytes:
    """``etcd-<v>-linux-amd64.tar.gz`` laid out like upstream's release, from Debian's etcd-client package."""
    subprocess.run(["apt-get", "download", "etcd-client"], cwd=workdir, check=True, capture_output=True)
    (deb,) = workdir.glob("etcd-client_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "x")], check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(workdir / "x/usr/bin/etcdctl", arcname=f"etcd-{ETCD_VERSION}-linux-amd64/etcdctl")
    return buf.getvalue()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def artifact_mirror(workdir: Path) -> Iterator[dict[str, str]]:
    """An HTTP artifact mirror the hosts reach at the gateway, carrying the etcd tools tarball.

    Yields the etcd_backup role's variables pointing at it (mirror URL, version, checksum).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "mirror"
    data = etcd_tarball(workdir)
    target = root / "etcd" / ETCD_VERSION / f"etcd-{ETCD_VERSION}-linux-amd64.tar.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    server = http.server.ThreadingHTTPServer((GATEWAY, 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "govcloud_artifact_mirror": f"http://{GATEWAY}:{server.server_address[1]}",
            "etcd_backup_etcd_version": ETCD_VERSION,
            "etcd_backup_etcd_checksum": f"sha256:{hashlib.sha256(data).hexdigest()}",
        }
    finally:
        server.shutdown()
