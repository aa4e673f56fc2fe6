"""An air-gapped bundle brings the whole platform up in a network namespace with only loopback.

One bundle of the whole `ci` platform is made per module (from the images already built on this host).
It is installed into an **empty** podman store of the test's own (``CONTAINERS_STORAGE_CONF``): every
image comes from the bundle, nothing the host has is used, and no other stack's images are touched.
Then `govcloud up` and `govcloud health` (with the citizen journey) run inside a fresh network
namespace (`ip netns add`, entered with `nsenter --net`) whose netfilter rejects and counts every
packet to an address outside loopback and every name lookup: the count must stay zero.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.bundle.build import image_refs
from infra.bundle.content import read_manifest
from infra.manifests.workloads import stack_components
from infra.model import load_stack, state_root
from tests.integration.conftest import govcloud, make_stack

pytestmark = pytest.mark.podman

OFFSET = 6400  # ports 24410.. (contract ports + offset): nobody else's


@dataclass
class Bundle:
    stack: str
    archive: Path
    refs: dict[str, str]


def run(*args: str, env: dict[str, str], ns: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # nsenter --net: only the network namespace (`ip netns exec` also remounts /sys, losing podman's cgroups)
    prefix = ["nsenter", f"--net=/run/netns/{ns}"] if ns else []
    return subprocess.run([*prefix, sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True,
                          env={**env, "COLUMNS": "300"}, check=False, timeout=timeout)


def netns_exec(ns: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=True).stdout


def outbound_attempts(ns: str) -> dict[str, int]:
    """Packets the namespace tried to send anywhere but loopback, and name lookups (rejected and counted)."""
    counts: dict[str, int] = {}
    for tool in ("iptables", "ip6tables"):
        for line in netns_exec(ns, tool, "-L", "OUTPUT", "-v", "-n", "-x").splitlines():
            if "REJECT" in line and int(line.split()[0]):
                counts[f"{tool}: {' '.join(line.split()[2:])}"] = int(line.split()[0])
    return counts


def isolate(ns: str) -> None:
    """Only loopback: every other destination is routed to lo, where netfilter rejects (fast) and counts it.

    DNS (port 53) is rejected and counted on every address, loopback too: a host whose resolver is
    127.0.0.53 would otherwise hide a lookup inside loopback.
    """
    netns_exec(ns, "ip", "link", "set", "lo", "up")
    for family, tool, local in (("-4", "iptables", "127.0.0.0/8"), ("-6", "ip6tables", "::1/128")):
        netns_exec(ns, "ip", family, "route", "add", "default", "dev", "lo")
        for proto in ("udp", "tcp"):
            netns_exec(ns, tool, "-A", "OUTPUT", "-p", proto, "--dport", "53", "-j", "REJECT")
        netns_exec(ns, tool, "-A", "OUTPUT", "!", "-d", local, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
        netns_exec(ns, tool, "-A", "OUTPUT", "!", "-d", local, "-j", "REJECT")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    """The whole platform's bundle (no .debs: their download is the network's job, not this test's)."""
    stack = make_stack("bndl", OFFSET)
    archive = tmp_path_factory.mktemp("bundle") / "bundle.tar.zst"
    t0 = time.monotonic()
    govcloud("bundle", "create", "-s", stack, "-o", str(archive), "--no-host-packages")
    print(f"bundle create: {time.monotonic() - t0:.0f}s, {archive.stat().st_size / 1e6:.0f} MB")
    refs = {name: entry["ref"] for name, entry in read_manifest(archive)["images"].items()}
    assert set(refs) == set(image_refs(stack_components(load_stack(stack))))  # every layer and component
    yield Bundle(stack, archive, refs)
    (state_root() / "envs" / f"Pulumi.{stack}.yaml").unlink(missing_ok=True)


@pytest.fixture
def empty_podman_store(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose podman uses a fresh, empty image store (graphroot/runroot under tmp_path)."""
    root, run_root = tmp_path / "store" / "root", tmp_path / "store" / "run"
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}"\nrunroot = "{run_root}"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    got = subprocess.run(["podman", "info", "--format", "{{.Store.GraphRoot}}"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert got == str(root), got
    yield env
    # --root/--runroot explicitly: this can only ever remove the test's own store
    subprocess.run(["podman", "--root", str(root), "--runroot", str(run_root), "rmi", "-a", "-f"],
                   capture_output=True, check=False)
    shutil.rmtree(tmp_path / "store", ignore_errors=True)


def test_whole_platform_from_bundle_with_no_network(bundle: Bundle, empty_podman_store: dict[str, str],
                                                    tmp_path: Path) -> None:
    assert os.geteuid() == 0, "needs root: rootful podman and `ip netns`"
    env, stack = empty_podman_store, bundle.stack
    images = subprocess.run(["podman", "images", "-q"], env=env, capture_output=True, text=True, check=True)
    assert images.stdout.strip() == "", "the test's podman store is not empty"

    t0 = time.monotonic()
    installed = run("bundle", "install", str(bundle.archive), "--workdir", str(tmp_path / "unpacked"), env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    t_install = time.monotonic() - t0
    for ref in bundle.refs.values():
        assert f"loaded {ref}" in installed.stdout, installed.stdout

    ns = f"govcloud-bundle-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        isolate(ns)
        assert len(netns_exec(ns, "ip", "-o", "link").splitlines()) == 1, "the namespace has more than loopback"
        # the check counts: a connection attempt and a name lookup are refused and counted
        probe = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c",
                                "import socket\ntry: socket.getaddrinfo('deb.debian.org', 80)\nexcept OSError: pass\n"
                                "socket.create_connection(('192.0.2.1', 80), timeout=5)"],
                               capture_output=True, text=True, check=False)
        assert probe.returncode != 0 and len(outbound_attempts(ns)) >= 2, (probe.stderr, outbound_attempts(ns))
        netns_exec(ns, "iptables", "-Z", "OUTPUT")
        netns_exec(ns, "ip6tables", "-Z", "OUTPUT")
        assert outbound_attempts(ns) == {}

        t0 = time.monotonic()
        up = run("up", "-s", stack, env=env, ns=ns)
        t_up = time.monotonic() - t0
        assert up.returncode == 0, f"up exited {up.returncode}:\n{up.stdout}\n{up.stderr}"
        assert "image localhost/govcloud" not in up.stderr + up.stdout, up.stderr  # nothing was built
        assert "debootstrap" not in up.stderr and "python runtime" not in up.stderr, up.stderr

        health = run("health", "-s", stack, "--json", env=env, ns=ns)
        assert health.returncode in (0, 1), health.stdout + health.stderr  # 1: degraded (never backed up)
        checks = json.loads(health.stdout)["checks"]
        journey = [c for c in checks if c["layer"] == "journey"]
        assert journey and all(c["status"] == "ok" for c in journey), journey
        not_ok = [c for c in checks if c["status"] != "ok" and c["layer"] != "backups"]
        assert not_ok == [], not_ok
        assert {c["name"] for c in checks if c["layer"] == "components"} >= set(bundle.refs) - {"base", "python"}

        assert outbound_attempts(ns) == {}, "something in up/health tried to reach an address outside the host"
        outside = run("status", "-s", stack, env=env)  # from the host's network: not reachable
        assert outside.returncode == 1, outside.stdout
        print(f"offline: bundle install {t_install:.0f}s, up {t_up:.0f}s")
    finally:
        run("down", "-s", stack, "--purge", env=env)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_mirror_of_the_bundle_is_an_oci_layout_podman_reads(bundle: Bundle, empty_podman_store: dict[str, str],
                                                              tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    t0 = time.monotonic()
    made = govcloud("bundle", "mirror", str(bundle.archive), "--to", str(dest), "-s", "staging",
                    "--url", "http://10.30.48.9:8080", "--registry", "10.30.48.9:5000")
    print(f"bundle mirror: {time.monotonic() - t0:.0f}s")
    assert "govcloud cluster converge -s staging --vars" in made.stdout, made.stdout
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest, check=False).returncode == 0
    assert not list(tmp_path.glob(".govcloud-bundle-*")), "the unpacked bundle was left behind"
    index = json.loads((dest / "images/oci/index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert set(names) == set(bundle.refs.values())
    pinned = (dest / "stack-images.yaml").read_text()
    assert f"10.30.48.9:5000/govcloud/portal:{bundle.refs['portal'].rsplit(':', 1)[1]}@{names[bundle.refs['portal']]}" \
        in pinned
    # podman reads the layout: the base image arrives in the empty store with the host's image id (same config)
    ref = bundle.refs["base"]
    pulled = subprocess.run(["podman", "pull", "-q", f"oci:{dest}/images/oci:{ref}"], env=empty_podman_store,
                            capture_output=True, text=True, check=False)
    assert pulled.returncode == 0, pulled.stderr
    host_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert pulled.stdout.strip() == host_id


def test_mirror_debian_archives_pass_apts_signature_and_hash_checks(tmp_path: Path) -> None:
    """The signed indices the bundle carries + a .deb at its pool path: apt (Debian's keyring) accepts them."""
    import functools
    import http.server
    import threading

    from infra.bundle.build import apt_indices
    from infra.bundle.mirror import apt_layout

    bundle, dest = tmp_path / "bundle", tmp_path / "mirror"
    apt_indices(bundle / "apt", lambda _m: None)
    (bundle / "debs").mkdir()
    subprocess.run(["apt-get", "download", "-q", "runc"], cwd=bundle / "debs", capture_output=True, check=True)
    (deb,) = (bundle / "debs").glob("runc_*.deb")
    placed = apt_layout(bundle, {"runc": {"file": f"debs/{deb.name}"}}, dest)
    assert placed.unplaced == [] and placed.placed[deb.name]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(dest))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        parts = tmp_path / "sources.d"
        parts.mkdir()
        (parts / "mirror.sources").write_text("".join(
            f"Types: deb\nURIs: {url}/{archive}\nSuites: {suites}\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\nCheck-Valid-Until: no\n\n"
            for archive, suites in (("debian", "bookworm bookworm-updates"), ("debian-security", "bookworm-security"))))
        (tmp_path / "lists/partial").mkdir(parents=True)
        (tmp_path / "cache/archives/partial").mkdir(parents=True)  # apt's cache: the test's own
        opts = ["-o", "APT::Sandbox::User=root", "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}",
                "-o", f"Dir::State::Lists={tmp_path / 'lists'}", "-o", f"Dir::Cache={tmp_path / 'cache'}",
                "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
        update = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, check=False)
        assert update.returncode == 0 and "W:" not in update.stderr and "E:" not in update.stderr, update.stderr
        # `apt-get download`: apt's own fetch and hash checks, without the system's dpkg lock
        got_dir = tmp_path / "got"
        got_dir.mkdir()
        fetch = ["apt-get", *opts, "download", "runc"]
        got = subprocess.run(fetch, cwd=got_dir, capture_output=True, text=True, check=False)
        assert got.returncode == 0, got.stdout + got.stderr
        assert (got_dir / deb.name).read_bytes() == deb.read_bytes()
        # a .deb changed on the mirror is refused (the signed index has its hash)
        (got_dir / deb.name).unlink()
        for path in placed.placed[deb.name]:
            data = bytearray((dest / path).read_bytes())
            data[-1] ^= 1
            (dest / path).unlink()
            (dest / path).write_bytes(bytes(data))
        bad = subprocess.run(fetch, cwd=got_dir, capture_output=True, text=True, check=False)
        assert bad.returncode != 0 and "Hash Sum mismatch" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        assert not (got_dir / deb.name).exists()
    finally:
        server.shutdown()
