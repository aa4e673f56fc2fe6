"""`bundle mirror` layout on small fake bundles: OCI layout, signed-index apt archives, vars, sums (no podman)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from infra.bundle.build import in_debian
from infra.bundle.content import BundleError, parse_sums, sha256_file
from infra.bundle.mirror import (
    PACKAGES,
    REF_NAME,
    apt_layout,
    check_oci_layout,
    inrelease_sha256,
    mirror,
    mirror_vars,
    oci_layout,
    role_apt_packages,
)

BASE = b"base layer " * 1000
REFS = {"base": "localhost/govcloud/base:aaaa", "portal": "localhost/govcloud/portal:bbbb"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def docker_archive(path: Path, bad_diff_ids: bool = False) -> None:
    """Two images sharing the base layer, as `podman save --multi-image-archive` lays them out."""
    files: dict[str, bytes] = {}
    entries = []
    for name, layers in (("base", [BASE]), ("portal", [BASE, b"portal app " * 300])):
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "10060"},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [f"sha256:{sha(x)}" for x in (layers[:1] if bad_diff_ids else layers)]}
                             }).encode()
        files[f"{sha(config)}.json"] = config
        for layer in layers:
            files[f"{sha(layer)}.tar"] = layer
        entries.append({"Config": f"{sha(config)}.json", "RepoTags": [REFS[name]],
                        "Layers": [f"{sha(x)}.tar" for x in layers]})
    files["manifest.json"] = json.dumps(entries).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_oci_layout_shares_layers_and_checks(tmp_path: Path) -> None:
    docker_archive(tmp_path / "images.tar")
    refs = oci_layout([tmp_path / "images.tar"], tmp_path / "oci")
    assert set(refs) == set(REFS.values())
    index = json.loads((tmp_path / "oci/index.json").read_text())
    assert [m["annotations"][REF_NAME] for m in index["manifests"]] == list(REFS.values())
    assert json.loads((tmp_path / "oci/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    blobs = sorted(p.name for p in (tmp_path / "oci/blobs/sha256").iterdir())
    assert len(blobs) == 2 + 2 + 2  # two configs, two manifests, the shared base layer once + the portal layer
    assert all(sha256_file(tmp_path / "oci/blobs/sha256" / b) == b for b in blobs)
    portal = json.loads((tmp_path / "oci/blobs/sha256" / refs[REFS["portal"]]["digest"][7:]).read_bytes())
    assert portal["layers"][0]["digest"] == f"sha256:{sha(BASE)}"
    assert portal["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert check_oci_layout(tmp_path / "oci") == []
    # a flipped byte in a blob, then a missing blob: each is one line
    layer = tmp_path / "oci/blobs/sha256" / sha(BASE)
    layer.write_bytes(b"X" + layer.read_bytes()[1:])
    assert check_oci_layout(tmp_path / "oci") == [f"blobs/sha256/{sha(BASE)[:12]}…: content does not match its digest"]
    layer.unlink()
    lines = check_oci_layout(tmp_path / "oci")
    assert len(lines) == 2 and all("missing or of the wrong size" in line for line in lines), lines


def test_oci_layout_refuses_layers_that_do_not_match_the_config(tmp_path: Path) -> None:
    docker_archive(tmp_path / "images.tar", bad_diff_ids=True)
    with pytest.raises(BundleError, match="do not match the config's diff_ids"):
        oci_layout([tmp_path / "images.tar"], tmp_path / "oci")


def fake_apt(root: Path, debs: dict[str, bytes], listed: list[str]) -> None:
    """apt/debian/dists/bookworm/{InRelease,main/binary-amd64/Packages} listing ``listed`` of ``debs``."""
    (root / "debs").mkdir(parents=True)
    stanzas = []
    for name, data in debs.items():
        (root / "debs" / name).write_bytes(data)
        if name in listed:
            pkg = name.split("_")[0]
            stanzas.append(f"Package: {pkg}\nVersion: 1.0\nArchitecture: amd64\n"
                           f"Filename: pool/main/{pkg[0]}/{pkg}/{name}\nSize: {len(data)}\nSHA256: {sha(data)}\n")
    packages = "\n".join(stanzas).encode()
    dists = root / "apt/debian/dists/bookworm"
    (dists / PACKAGES).parent.mkdir(parents=True)
    (dists / PACKAGES).write_bytes(packages)
    (dists / "InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nSuite: stable\nSHA256:\n"
        f" {sha(b'x')} 1 main/binary-i386/Packages\n {sha(packages)} {len(packages)} {PACKAGES}\n"
        "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n")


def test_apt_layout_places_listed_debs_at_their_pool_path(tmp_path: Path) -> None:
    bundle, dest = tmp_path / "b", tmp_path / "m"
    debs = {"containerd_1.0_amd64.deb": b"containerd", "nodejs_1.0_amd64.deb": b"not debian's"}
    fake_apt(bundle, debs, ["containerd_1.0_amd64.deb"])
    entries = {n.split("_")[0]: {"file": f"debs/{n}"} for n in debs}
    got = apt_layout(bundle, entries, dest)
    assert got.archives == ["debian"]
    assert got.placed == {"containerd_1.0_amd64.deb": ["debian/pool/main/c/containerd/containerd_1.0_amd64.deb"]}
    assert got.unplaced == ["nodejs_1.0_amd64.deb"]
    assert (dest / "debian/pool/main/c/containerd/containerd_1.0_amd64.deb").read_bytes() == b"containerd"
    inrelease = (dest / "debian/dists/bookworm/InRelease").read_text()
    assert inrelease == (bundle / "apt/debian/dists/bookworm/InRelease").read_text()  # the signed file, unchanged
    assert inrelease_sha256(inrelease, PACKAGES) == sha256_file(dest / "debian/dists/bookworm" / PACKAGES)


def test_apt_layout_refuses_an_index_its_inrelease_does_not_sign(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    fake_apt(bundle, {"containerd_1.0_amd64.deb": b"c"}, ["containerd_1.0_amd64.deb"])
    packages = bundle / "apt/debian/dists/bookworm" / PACKAGES
    packages.write_text(packages.read_text().replace("Version: 1.0", "Version: 9.9"))
    with pytest.raises(BundleError, match="does not match its InRelease"):
        apt_layout(bundle, {}, tmp_path / "m")


def test_role_packages_are_read_from_the_roles() -> None:
    names = role_apt_packages()
    assert {"containerd", "runc", "restic", "cron", "nftables", "openssh-server", "kubeadm", "kubelet",
            "kubectl"} <= set(names)


def test_mirror_of_an_unpacked_bundle(tmp_path: Path) -> None:
    bundle, dest = tmp_path / "b", tmp_path / "m"
    fake_apt(bundle, {"containerd_1.0_amd64.deb": b"containerd"}, ["containerd_1.0_amd64.deb"])
    (bundle / "images").mkdir()
    docker_archive(bundle / "images/images.tar")
    (bundle / "wheels").mkdir()
    (bundle / "wheels/govcloud-0.1.0-py3-none-any.whl").write_bytes(b"whl")
    manifest = {"stack": "local", "images": {n: {"ref": r, "file": "images/images.tar"} for n, r in REFS.items()},
                "wheels": {"govcloud": {"version": "0.1.0", "file": "wheels/govcloud-0.1.0-py3-none-any.whl"}},
                "debs": {"containerd": {"file": "debs/containerd_1.0_amd64.deb"}},
                "cluster_packages_missing": ["kubeadm", "kubelet", "kubectl"]}
    made = mirror(manifest, bundle, dest, "http://10.0.0.5:8080/", "registry.gov.test", "staging", "1.31.4",
                  lambda _m: None)
    index = json.loads((dest / "images/oci/index.json").read_text())
    digest = {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}[REFS["portal"]]
    assert made.images == {"portal": f"registry.gov.test/govcloud/portal:bbbb@{digest}"}  # components only
    assert "# Merge into stacks/Pulumi.staging.yaml" in (dest / "stack-images.yaml").read_text()
    stack_images = yaml.safe_load((dest / "stack-images.yaml").read_text())
    assert stack_images["config"]["govcloud:components"]["portal"]["image"] == made.images["portal"]
    push = (dest / "images/push.sh").read_text()
    assert f'skopeo copy --preserve-digests oci:oci:{REFS["portal"]} "docker://$REGISTRY/govcloud/portal:bbbb"' in push
    subprocess.run(["sh", "-n", str(dest / "images/push.sh")], check=True)
    assert yaml.safe_load((dest / "mirror-vars.yml").read_text()) == mirror_vars("http://10.0.0.5:8080", "registry.gov.test")
    assert (dest / "debian/pool/main/c/containerd/containerd_1.0_amd64.deb").exists()
    assert (dest / "wheels/govcloud-0.1.0-py3-none-any.whl").exists()
    adds = (dest / "OPERATOR-ADDS.md").read_text()
    for needed in ("kubernetes/v1.31/deb/", "kubeadm, kubelet, kubectl", "artifacts/etcd/v3.5.15/",
                   "artifacts/calico/v3.28.2/calico.yaml", "registry.gov.test/pause:3.10", "v1.31.4"):
        assert needed in adds, needed
    sums = parse_sums((dest / "SHA256SUMS").read_text())
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == files and made.files == len(files)
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest, check=False).returncode == 0


def test_only_packages_a_debian_archive_has_count_as_debian() -> None:
    policy = """containerd:
  Installed: (none)
  Candidate: 1.6.20~ds1-1+deb12u3
  Version table:
     1.6.20~ds1-1+deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
kubectl:
  Installed: 1:528.0.0-0
  Candidate: 1:528.0.0-0
  Version table:
 *** 1:528.0.0-0 100
        100 /var/lib/dpkg/status
nodejs:
  Installed: (none)
  Candidate: 20.1-1nodesource1
  Version table:
     20.1-1nodesource1 500
        500 https://deb.nodesource.com/node_20.x nodistro/main amd64 Packages
"""
    sources = {"deb.debian.org/debian bookworm", "deb.debian.org/debian-security bookworm-security"}
    assert in_debian(policy, sources) == {"containerd"}  # not an installed kubectl, not another vendor's repo
