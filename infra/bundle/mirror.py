"""``govcloud bundle mirror``: a bundle laid out as the cluster's mirror (docs/airgap.md, "Clusters").

The Ansible roles take every package, tarball and image from mirror variables
(``playbooks/group_vars/all/mirror.yml``); this module writes a directory a plain web server serves
as that mirror, plus the variables pointing the roles at it::

    debian/ debian-security/   partial Debian archives: the signed InRelease and Packages indices
                               of the bundle's build host and the bundle's .debs at their pool paths
                               (apt checks Debian's signature, then each .deb's hash: nothing is re-signed)
    images/oci/                an OCI image layout of every image (shared layers stored once);
    images/push.sh             skopeo copies into the stack's registry, digests preserved
    stack-images.yaml          components.<c>.image for the stack file, pinned by digest
    wheels/                    govcloud's wheel and the runtime wheelhouse (pip --find-links)
    kubernetes/ artifacts/     empty: what Debian does not have, the operator adds (OPERATOR-ADDS.md)
    mirror-vars.yml            the roles' mirror variables (``govcloud cluster ... --vars mirror-vars.yml``)
    SHA256SUMS                 every file above

Pure file work (no podman, no network): the OCI layout is written from the bundle's docker-archive.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.bundle.content import BundleError, debian_index_entries, sha256_file, write_sums

Progress = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
#: where apt-get's signed index copies live inside a bundle: apt/<archive>/dists/<suite>/...
APT_DIR = "apt"
PACKAGES = "main/binary-amd64/Packages"


# ---- OCI image layout from a docker-archive ---------------------------------------------------------
def _put_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = blobs / digest
    if not path.exists():
        path.write_bytes(data)
    return f"sha256:{digest}", len(data)


def _put_stream(blobs: Path, src: Any) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=blobs, delete=False) as tmp:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            tmp.write(chunk)
            size += len(chunk)
    path = blobs / h.hexdigest()
    if path.exists():
        Path(tmp.name).unlink()
    else:
        Path(tmp.name).replace(path)
    return f"sha256:{h.hexdigest()}", size


def oci_layout(archives: list[Path], dest: Path) -> dict[str, dict[str, Any]]:
    """Write every image of the docker-archives into one OCI image layout at ``dest``.

    Layers stay uncompressed (their digest is the config's diff_id, checked here), so the layout
    is exact and a ``skopeo copy --preserve-digests`` to a registry keeps every digest.
    Returns ref → {"digest": manifest digest, "size": bytes}.
    """
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_file = dest / "index.json"
    index: dict[str, Any] = json.loads(index_file.read_text()) if index_file.exists() else \
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    refs: dict[str, dict[str, Any]] = {}
    for archive in archives:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise BundleError([f"{archive.name}: no manifest.json (not a docker-archive)"])
            entries = json.load(member)
            done: dict[str, tuple[str, int]] = {}
            for entry in entries:
                cfile = tar.extractfile(entry["Config"])
                assert cfile is not None
                config_bytes = cfile.read()
                config = json.loads(config_bytes)
                layers = []
                for name in entry["Layers"]:
                    if name not in done:
                        src = tar.extractfile(name)
                        assert src is not None
                        done[name] = _put_stream(blobs, src)
                    digest, size = done[name]
                    layers.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
                diff_ids = config.get("rootfs", {}).get("diff_ids", [])
                if diff_ids != [layer["digest"] for layer in layers]:
                    raise BundleError([f"{archive.name}: {entry['RepoTags']}: layers do not match the config's diff_ids"])
                cdigest, csize = _put_blob(blobs, config_bytes)
                manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": csize}, "layers": layers}
                mdigest, msize = _put_blob(blobs, json.dumps(manifest, separators=(",", ":")).encode())
                for ref in entry.get("RepoTags") or []:
                    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref]
                    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize,
                                               "annotations": {REF_NAME: ref}})
                    refs[ref] = {"digest": mdigest, "size": msize}
    index_file.write_text(json.dumps(index, indent=1) + "\n")
    return refs


def check_oci_layout(dest: Path) -> list[str]:
    """Problems with an OCI layout: every blob named by its sha256, every descriptor's blob present and sized."""
    problems = []
    blobs = dest / "blobs" / "sha256"
    for blob in sorted(blobs.iterdir()):
        if sha256_file(blob) != blob.name:
            problems.append(f"blobs/sha256/{blob.name[:12]}…: content does not match its digest")

    def present(desc: dict[str, Any], what: str) -> bool:
        path = blobs / desc["digest"].removeprefix("sha256:")
        if not path.is_file() or path.stat().st_size != desc["size"]:
            problems.append(f"{what}: blob {desc['digest'][:19]}… missing or of the wrong size")
            return False
        return True

    for desc in json.loads((dest / "index.json").read_text())["manifests"]:
        ref = desc.get("annotations", {}).get(REF_NAME, "?")
        if present(desc, ref):
            manifest = json.loads((blobs / desc["digest"].removeprefix("sha256:")).read_bytes())
            for layer in [manifest["config"], *manifest["layers"]]:
                present(layer, ref)
    return problems


# ---- partial Debian archives from the signed indices -----------------------------------------------
def inrelease_sha256(text: str, path: str) -> str | None:
    """The SHA256 an InRelease file lists for ``path`` (e.g. main/binary-amd64/Packages)."""
    section = text.split("\nSHA256:\n", 1)[-1] if "\nSHA256:\n" in text else ""
    for line in section.splitlines():
        if not line.startswith(" "):
            break
        parts = line.split()
        if len(parts) == 3 and parts[2] == path:
            return parts[0]
    return None


def index_stanzas(packages_text: str) -> list[dict[str, str]]:
    out = []
    for stanza in packages_text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Package" in fields and "Filename" in fields:
            out.append(fields)
    return out


@dataclass
class AptLayout:
    placed: dict[str, list[str]] = field(default_factory=dict)  # deb file name -> mirror paths
    unplaced: list[str] = field(default_factory=list)  # .debs no signed index lists (their hash)
    archives: list[str] = field(default_factory=list)


def apt_layout(bundle: Path, debs: dict[str, dict[str, str]], dest: Path) -> AptLayout:
    """Each archive's signed indices (as the bundle carries them) and every .deb an index lists, at its Filename."""
    out = AptLayout()
    apt = bundle / APT_DIR
    by_sha: dict[str, list[tuple[str, str]]] = {}
    for inrelease in sorted(apt.glob("*/dists/*/InRelease")):
        archive_dir = inrelease.parents[2]
        archive = archive_dir.name
        packages = inrelease.parent / PACKAGES
        want = inrelease_sha256(inrelease.read_text(errors="replace"), PACKAGES)
        if not packages.is_file() or want is None or sha256_file(packages) != want:
            raise BundleError([f"{packages.relative_to(bundle)}: does not match its InRelease (sha256)"])
        target = dest / archive / inrelease.parent.relative_to(archive_dir)
        (target / PACKAGES).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(inrelease, target / "InRelease")
        shutil.copy(packages, target / PACKAGES)
        if archive not in out.archives:
            out.archives.append(archive)
        for st in index_stanzas(packages.read_text(errors="replace")):
            by_sha.setdefault(st.get("SHA256", ""), []).append((archive, st["Filename"]))
    for entry in debs.values():
        src = bundle / entry["file"]
        homes = by_sha.get(sha256_file(src), [])
        if not homes:
            out.unplaced.append(src.name)
            continue
        for archive, filename in homes:
            target = dest / archive / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                try:
                    target.hardlink_to(src)
                except OSError:
                    shutil.copy(src, target)
            out.placed.setdefault(src.name, []).append(f"{archive}/{filename}")
    return out


# ---- what the cluster needs that a bundle cannot carry ---------------------------------------------
def role_defaults() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in sorted(PLAYBOOKS.glob("roles/*/defaults/main.yml")):
        values.update(yaml.safe_load(path.read_text()) or {})
    return values


def role_apt_packages() -> list[str]:
    """Every package name an ``ansible.builtin.apt`` task of the roles installs (literal or a defaults list)."""
    defaults = role_defaults()
    names: list[str] = []
    for path in sorted(PLAYBOOKS.glob("roles/*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            apt = task.get("ansible.builtin.apt") if isinstance(task, dict) else None
            if not isinstance(apt, dict) or "name" not in apt:
                continue
            value = apt["name"]
            m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value) if isinstance(value, str) else None
            if m:
                value = defaults.get(m.group(1), [])
            elif isinstance(value, str) and "{{" in value:  # e.g. kubernetes_packages pinned with a filter
                m = re.match(r"\{\{\s*(\w+)", value)
                value = defaults.get(m.group(1), []) if m else []
            for name in [value] if isinstance(value, str) else value:
                if name not in names:
                    names.append(name)
    return names


def operator_adds(kubernetes_version: str, missing_debs: list[str], registry: str) -> str:
    """OPERATOR-ADDS.md: exactly what the mirror still needs from the operator's own sources."""
    d = role_defaults()
    minor = ".".join(kubernetes_version.split(".")[:2])
    etcd, cni = d["etcd_backup_etcd_version"], d["kubernetes_cni_version"]
    pause = d["container_runtime_sandbox_image"].rsplit(":", 1)[-1]
    lines = [
        "# What this mirror does not carry (not in Debian, so not in the bundle)",
        "",
        "Add these from the operator's own copy (a machine that reached the upstream once, or a",
        "data-centre mirror), at these paths, before `govcloud cluster converge`:",
        "",
        f"1. `kubernetes/v{minor}/deb/`: a mirror of `https://pkgs.k8s.io/core:/stable:/v{minor}/deb/` with",
        f"   `Release.key`, `InRelease`, `Packages` and the .debs of {', '.join(missing_debs)} at",
        f"   {kubernetes_version} plus their dependencies there (cri-tools, kubernetes-cni).",
        f"2. `artifacts/etcd/{etcd}/etcd-{etcd}-linux-amd64.tar.gz` (github.com/etcd-io/etcd releases;",
        "   set `etcd_backup_etcd_checksum: sha256:<digest>`).",
        f"3. `artifacts/calico/{cni}/calico.yaml` (github.com/projectcalico/calico `manifests/calico.yaml`;",
        "   set `kubernetes_cni_manifest_checksum: sha256:<digest>`).",
        f"4. Images in `{registry}`, under the path of their origin registry (containerd's hosts.toml",
        "   maps every origin to `<registry>/<origin>/...`):",
        f"   - `{registry}/registry.k8s.io/`: kube-apiserver, kube-controller-manager, kube-scheduler,",
        f"     kube-proxy at v{kubernetes_version}, coredns/coredns, etcd (the tags",
        f"     `kubeadm config images list --kubernetes-version v{kubernetes_version}` prints);",
        f"   - `{registry}/pause:{pause}` (containerd's sandbox image, `container_runtime_sandbox_image`);",
        f"   - `{registry}/docker.io/calico/`: cni, node, kube-controllers at {cni}.",
        "",
        "Debian has containerd and runc (in `debian/` here); the bundle carries them and every other",
        "package the roles install.",
    ]
    return "\n".join(lines) + "\n"


def mirror_vars(url: str, registry: str) -> dict[str, Any]:
    """The roles' mirror variables (group_vars/all/mirror.yml) for a mirror served at ``url``."""
    url = url.rstrip("/")
    return {
        "govcloud_mirror": url,
        "govcloud_apt_mirror": f"{url}/debian",
        "govcloud_apt_security_mirror": f"{url}/debian-security",
        "govcloud_kubernetes_apt_mirror": f"{url}/kubernetes",
        "govcloud_artifact_mirror": f"{url}/artifacts",
        "govcloud_image_registry": registry,
        # the indices are the bundle's signed snapshot: its Valid-Until (a week for -security) passes
        "common_apt_check_valid_until": False,
    }


@dataclass
class Mirrored:
    dest: Path
    images: dict[str, str]  # component -> registry reference with digest
    debs_placed: int
    debs_unplaced: list[str]
    files: int


def mirror(manifest: dict[str, Any], bundle: Path, dest: Path, url: str, registry: str, stack: str,
           kubernetes_version: str, say: Progress) -> Mirrored:
    """Lay out an unpacked, verified bundle (``bundle``) as the mirror of cluster stack ``stack`` in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archives = sorted({bundle / e["file"] for e in manifest["images"].values()})
    say(f"OCI image layout of {len(manifest['images'])} image(s)")
    oci = oci_layout(archives, dest / "images" / "oci")
    problems = check_oci_layout(dest / "images" / "oci")
    if problems:
        raise BundleError(problems)
    components = {n: e["ref"] for n, e in manifest["images"].items() if n not in ("base", "python")}
    images, push = {}, ["#!/bin/sh", "# Copy the bundle's images into the stack's registry (digests preserved: stack-images.yaml",
                        "# pins them). Needs skopeo (Debian: apt-get install skopeo) and a login to the registry.",
                        "set -eu", 'cd "$(dirname "$0")"', f'REGISTRY="${{REGISTRY:-{registry}}}"']
    for name, ref in components.items():
        path = ref.split("/", 1)[1]  # localhost/govcloud/<c>:<tag> -> govcloud/<c>:<tag>
        images[name] = f"{registry}/{path}@{oci[ref]['digest']}"
        push.append(f'skopeo copy --preserve-digests oci:oci:{ref} "docker://$REGISTRY/{path}"')
    (dest / "images" / "push.sh").write_text("\n".join(push) + "\n")
    (dest / "images" / "push.sh").chmod(0o755)
    stack_images = {"config": {"govcloud:components": {n: {"image": ref} for n, ref in images.items()}}}
    (dest / "stack-images.yaml").write_text(
        f"# Merge into stacks/Pulumi.{stack}.yaml: the cluster pulls the bundle's images from {registry}\n"
        "# (after images/push.sh to that registry), pinned by digest.\n" + yaml.safe_dump(stack_images, sort_keys=False))

    say("Debian archives: signed indices and the bundle's .debs at their pool paths")
    apt = apt_layout(bundle, manifest.get("debs", {}), dest)
    if apt.unplaced:  # no signed index lists them: a flat, unsigned repository beside the archives
        flat = dest / "debs-unsigned"
        flat.mkdir(exist_ok=True)
        for name in apt.unplaced:
            shutil.copy(bundle / "debs" / name, flat / name)

    wheels = dest / "wheels"
    wheels.mkdir(exist_ok=True)
    for entry in manifest.get("wheels", {}).values():
        shutil.copy(bundle / entry["file"], wheels / Path(entry["file"]).name)
    for empty in ("kubernetes", "artifacts"):
        (dest / empty).mkdir(exist_ok=True)
    missing = [p for p in manifest.get("cluster_packages_missing", []) if p]
    (dest / "OPERATOR-ADDS.md").write_text(operator_adds(kubernetes_version, missing or ["kubeadm", "kubelet",
                                                                                        "kubectl"], registry))
    (dest / "mirror-vars.yml").write_text(
        "# The roles' mirror variables for this mirror: govcloud cluster converge -s STACK --vars mirror-vars.yml\n"
        + yaml.safe_dump(mirror_vars(url, registry), sort_keys=False))
    sums = write_sums(dest)
    return Mirrored(dest, images, len(apt.placed), apt.unplaced, len(sums))


__all__ = ["AptLayout", "Mirrored", "apt_layout", "check_oci_layout", "debian_index_entries", "inrelease_sha256",
           "mirror", "mirror_vars", "oci_layout", "role_apt_packages"]
