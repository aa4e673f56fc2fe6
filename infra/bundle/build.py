"""Create, verify and install an air-gapped bundle (see docs/airgap.md).

``create`` reuses the image builder (content-tagged images: a loaded image is found by ``govcloud up``
under the same tag, so nothing is rebuilt), the host's pip for the wheelhouse and apt for host packages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from infra.bundle.content import (
    FORMAT,
    MANIFEST,
    BundleError,
    check,
    deb_name_version,
    norm,
    pack,
    parse_constraints,
    read,
    requirement_names,
    sha256_file,
    wheel_name_version,
    write_sums,
)
from infra.bundle.mirror import APT_DIR
from infra.contract import ComponentSpec
from infra.images.build import REPO, ImageRef, base_ref, build_all, cache_dir, exists, python_ref
from infra.runtime.podman import podman

Progress = Callable[[str], None]
LISTS = Path("/var/lib/apt/lists")
APT_HELPER = "/usr/lib/apt/apt-helper"
IMAGES_FILE = "images/images.tar"
REQS = REPO / "components" / "requirements.txt"
CONS = REPO / "constraints.txt"
BOOTSTRAP = REPO / "scripts" / "bootstrap-host.sh"
# apt-cache depends: only what the packages need to work
DEPENDS_FLAGS = ["--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                 "--no-replaces", "--no-enhances"]


def govcloud_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def runtime_requirements() -> list[str]:
    """Project names the runtime needs a wheel of: govcloud's own dependencies and the images' runtime."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return sorted({*requirement_names(list(deps)), *requirement_names(REQS.read_text().splitlines()), "govcloud"})


def image_refs(specs: list[ComponentSpec]) -> dict[str, ImageRef]:
    """Every image ``govcloud up`` looks for: the layers (base, python when used) and each component."""
    from infra.images.build import image_for

    base = base_ref()
    refs = {"base": base}
    if any(s.image.base == "python" for s in specs):
        refs["python"] = python_ref(base)
    refs.update({s.name: image_for(s) for s in specs})
    return refs


def host_packages() -> list[str]:
    """bootstrap-host.sh's PACKAGES array (the one list of what the host needs)."""
    m = re.search(r"^PACKAGES=\((.*?)\)", BOOTSTRAP.read_text(), re.S | re.M)
    if not m:
        raise BundleError([f"{BOOTSTRAP}: no PACKAGES=(...) array"])
    return m.group(1).split()


def parse_depends(text: str) -> list[str]:
    """Package names from ``apt-cache depends --recurse`` output (no virtual <names>, no foreign arches)."""
    names = {line.strip() for line in text.splitlines() if line and not line[0].isspace()}
    return sorted(n for n in names if not n.startswith("<") and ":" not in n)


def essential(show_text: str) -> set[str]:
    """Packages marked Essential or Priority: required in ``apt-cache show`` output (every Debian has them)."""
    found = set()
    for stanza in show_text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Essential") == "yes" or fields.get("Priority") == "required":
            found.add(fields.get("Package", ""))
    return found


def resolve_debs(packages: list[str]) -> list[str]:
    deps = subprocess.run(["apt-cache", "depends", *DEPENDS_FLAGS, *packages], check=True, capture_output=True,
                          text=True).stdout
    names = parse_depends(deps)
    show = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], check=False, capture_output=True,
                          text=True).stdout
    skip = essential(show)
    return [n for n in names if n not in skip]


def _run(cmd: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        errs = [ln for ln in proc.stderr.splitlines() if ln.strip() and "is ignored: it is neither" not in ln]
        raise BundleError([f"{what}: {errs[-1] if errs else f'exit {proc.returncode}'}"])
    return proc


def wheelhouse(say: Progress) -> Path:
    """Runtime wheels (govcloud's dependencies + components/requirements.txt under constraints.txt), cached."""
    from infra.images.build import _digest

    pyproject = (REPO / "pyproject.toml").read_bytes()
    house = cache_dir() / "bundle-wheelhouse" / _digest(pyproject, REQS.read_bytes(), CONS.read_bytes())
    if (house / ".complete").exists():
        return house
    say("pip wheel: runtime dependency wheelhouse")
    house.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="govcloud-src-") as tmp:
        # dependencies only: the project's own wheel is built fresh for every bundle
        reqs = Path(tmp) / "requirements.txt"
        deps = tomllib.loads(pyproject.decode())["project"]["dependencies"]
        reqs.write_text("\n".join([*deps, *REQS.read_text().splitlines()]) + "\n")
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house), "-r", str(reqs), "-c", str(CONS)],
             "pip wheel")
    (house / ".complete").touch()
    return house


@dataclass
class Created:
    path: Path
    bytes: int
    seconds: float
    images: int
    wheels: int
    debs: int


def create(stack: str, specs: list[ComponentSpec], output: Path, say: Progress, with_debs: bool = True) -> Created:
    t0 = time.monotonic()
    refs = image_refs(specs)
    say(f"images for {stack}: {', '.join(refs)}")
    build_all(specs, say)  # builds what is missing, reuses every content tag already present
    work = Path(tempfile.mkdtemp(prefix="govcloud-bundle-", dir=output.parent))
    try:
        (work / "images").mkdir()
        missing = [str(ref) for ref in refs.values() if not exists(ref)]
        if missing:
            raise BundleError([f"image {ref}: not in podman after the build" for ref in missing])
        # one multi-image docker-archive: the base and python layers every image shares are stored once
        say(f"podman save {len(refs)} image(s) into {IMAGES_FILE}")
        podman("save", "--multi-image-archive", "--format", "docker-archive", "-o", str(work / IMAGES_FILE),
               *(str(ref) for ref in refs.values()))
        images = {name: {"ref": str(ref), "file": IMAGES_FILE} for name, ref in refs.items()}
        wheels_dir = work / "wheels"
        wheels_dir.mkdir()
        say("pip wheel --no-deps . (govcloud's own wheel)")
        with tempfile.TemporaryDirectory(prefix="govcloud-wheel-") as tmp:
            _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, str(REPO)], "pip wheel .")
            for whl in Path(tmp).glob("*.whl"):
                shutil.copy(whl, wheels_dir / whl.name)
        for whl in wheelhouse(say).glob("*.whl"):
            if wheel_name_version(whl.name)[0] != "govcloud":
                shutil.copy(whl, wheels_dir / whl.name)
        wheels = {}
        for whl in sorted(wheels_dir.glob("*.whl")):
            name, version = wheel_name_version(whl.name)
            wheels[name] = {"version": version, "file": f"wheels/{whl.name}"}
        (work / "python").mkdir()
        shutil.copy(CONS, work / "python" / "constraints.txt")
        shutil.copy(REQS, work / "python" / "requirements.txt")
        debs, cluster, cluster_missing = fetch_debs(work / "debs", say) if with_debs else ({}, [], [])
        if with_debs:
            apt_indices(work / APT_DIR, say)
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
        manifest = {
            "format": FORMAT, "govcloud": govcloud_version(), "commit": commit, "stack": stack,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host_packages": host_packages() if with_debs else [],
            "cluster_packages": cluster, "cluster_packages_missing": cluster_missing,
            "images": images, "wheels": wheels, "debs": debs,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        say("SHA256SUMS of every file")
        write_sums(work)
        say(f"writing {output}")
        pack(work, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Created(output, output.stat().st_size, time.monotonic() - t0, len(images), len(wheels), len(debs))


def debian_sources() -> set[str]:
    """``host/path suite`` of every apt source on this host whose InRelease says ``Origin: Debian``."""
    found = set()
    for inrelease in LISTS.glob("*_dists_*_InRelease"):
        if "\nOrigin: Debian\n" in inrelease.read_text(errors="replace"):
            prefix, suite = inrelease.name[: -len("_InRelease")].split("_dists_", 1)
            found.add(f"{prefix.replace('_', '/')} {suite.replace('_', '/')}")
    return found


def apt_available(packages: list[str], sources: set[str] | None = None) -> tuple[list[str], list[str]]:
    """(packages a Debian archive in this host's apt sources has, the others), from ``apt-cache policy``."""
    sources = debian_sources() if sources is None else sources
    out = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True, check=False).stdout
    have = in_debian(out, sources)
    return [p for p in packages if p in have], [p for p in packages if p not in have]


def in_debian(policy: str, sources: set[str]) -> set[str]:
    """Packages whose ``apt-cache policy`` version table has a line from one of ``sources``."""
    out = policy
    have = set()
    name = ""
    for line in out.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            name = line[:-1]
            continue
        m = re.match(r"\s+\d+ \w+://(\S+) ([^/\s]+)/", line)  # "  500 http://deb.debian.org/debian bookworm/main ..."
        if m and f"{m.group(1).rstrip('/')} {m.group(2)}" in sources:
            have.add(name)
    return have


def apt_indices(dest: Path, say: Progress) -> list[str]:
    """Copy the host's signed Debian indices (InRelease + main/binary-amd64/Packages, checked against it).

    ``dest/<archive>/dists/<suite>/``: ``bundle mirror`` serves them as partial Debian archives whose
    signature apt checks with debian-archive-keyring (see infra/bundle/mirror.py).
    """
    from infra.bundle.mirror import PACKAGES, inrelease_sha256

    copied = []
    for inrelease in sorted(LISTS.glob("*_dists_*_InRelease")):
        text = inrelease.read_text(errors="replace")
        if "\nOrigin: Debian\n" not in text:
            continue
        prefix, suite = inrelease.name[: -len("_InRelease")].split("_dists_", 1)
        archive = prefix.split("_")[-1]  # deb.debian.org_debian-security -> debian-security
        found = sorted(LISTS.glob(f"{prefix}_dists_{suite}_{PACKAGES.replace('/', '_')}*"))
        if not found:
            continue
        target = dest / archive / "dists" / suite.replace("_", "/")
        (target / PACKAGES).parent.mkdir(parents=True, exist_ok=True)
        with (target / PACKAGES).open("wb") as f:
            _run_bytes([APT_HELPER, "cat-file", str(found[0])], f)
        if sha256_file(target / PACKAGES) != inrelease_sha256(text, PACKAGES):
            raise BundleError([f"{found[0]}: does not match {inrelease.name} (run apt-get update)"])
        shutil.copy(inrelease, target / "InRelease")
        copied.append(f"{archive} {suite}")
    say(f"signed apt indices: {', '.join(copied) or 'none found'}")
    return copied


def _run_bytes(cmd: list[str], out: IO[bytes]) -> None:
    proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise BundleError([f"{cmd[0]}: {proc.stderr.decode(errors='replace').strip() or proc.returncode}"])


def fetch_debs(dest: Path, say: Progress) -> tuple[dict[str, dict[str, str]], list[str], list[str]]:
    """The host's and the cluster roles' packages and their dependencies as .debs, with a Packages.gz index.

    Returns (debs, cluster packages included, cluster packages Debian does not have).
    """
    from infra.bundle.mirror import role_apt_packages

    if shutil.which("dpkg-scanpackages") is None:
        raise BundleError(["dpkg-scanpackages not found: install dpkg-dev (scripts/bootstrap-host.sh does)"])
    cluster, missing = apt_available(role_apt_packages())
    names = resolve_debs([*host_packages(), *cluster])
    say(f"apt-get download: {len(names)} package(s) (host and cluster roles; not in Debian: {', '.join(missing)})")
    dest.mkdir(parents=True)
    _run(["apt-get", "download", "-q", *names], "apt-get download", cwd=dest)
    say("dpkg-scanpackages: local apt index")
    index = _run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], "dpkg-scanpackages", cwd=dest).stdout
    (dest / "Packages").write_text(index)
    debs = {}
    for deb in sorted(dest.glob("*.deb")):
        name, version, arch = deb_name_version(deb.name)
        debs[name] = {"version": version, "arch": arch, "file": f"debs/{deb.name}"}
    return debs, cluster, missing


def needed(stack: str) -> tuple[dict[str, str] | None, list[str]]:
    """The images this checkout's stack needs (None if the stack is unknown here) and the runtime wheels."""
    from infra.manifests.workloads import stack_components
    from infra.model import StackError, load_stack

    try:
        specs = stack_components(load_stack(stack))
    except StackError:
        return None, runtime_requirements()
    return {k: str(v) for k, v in image_refs(specs).items()}, runtime_requirements()


def verify(archive: Path, extract_to: Path | None = None) -> dict:
    """Read and check the bundle; raises BundleError (one line per problem) or returns the manifest."""
    got = read(archive, extract_to)
    images: dict[str, str] | None = None
    reqs = runtime_requirements()
    if got.manifest is not None and not got.errors:
        images, reqs = needed(str(got.manifest.get("stack", "")))
    problems = check(got, images, reqs, parse_constraints(CONS.read_text()))
    if got.manifest is not None and images is None and not got.errors:
        problems.append(f"stack {got.manifest.get('stack')}: not known in this checkout, its images were not checked")
    if problems:
        raise BundleError(problems)
    assert got.manifest is not None
    return got.manifest


def apt_commands(debs_dir: Path, packages: list[str]) -> list[list[str]]:
    """apt-get update/install against only the bundle's index (its own sources list and lists dir)."""
    lists = debs_dir / ".apt-lists"
    sources = debs_dir / ".sources.list"
    opts = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={lists}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    return [["apt-get", *opts, "update"],
            ["apt-get", *opts, "install", "-y", "--no-install-recommends", *packages]]


def prepare_apt(debs_dir: Path) -> None:
    (debs_dir / ".apt-lists" / "partial").mkdir(parents=True, exist_ok=True)
    (debs_dir / ".sources.list").write_text(f"deb [trusted=yes] file:{debs_dir.resolve()} ./\n")


@dataclass
class Installed:
    loaded: list[str]
    present: list[str]
    apt: list[list[str]]
    seconds: float


def install(archive: Path, workdir: Path, say: Progress, venv: Path | None = None,
            run_apt: bool = False) -> Installed:
    t0 = time.monotonic()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    say(f"reading and verifying {archive}")
    try:
        manifest = verify(archive, extract_to=workdir)
    except BundleError:
        shutil.rmtree(workdir, ignore_errors=True)  # nothing of a refused bundle is kept or used
        raise
    apt: list[list[str]] = []
    debs_dir = workdir / "debs"
    if manifest.get("debs"):
        prepare_apt(debs_dir)
        apt = apt_commands(debs_dir, list(manifest.get("host_packages", [])))
        if run_apt:
            for cmd in apt:
                say(f"apt-get {cmd[11]} (bundle index only)")
                _run(cmd, "apt-get", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    loaded, present = [], []
    wanted: dict[str, list[str]] = {}  # archive file -> the refs it holds that podman lacks
    for entry in manifest["images"].values():
        ref = entry["ref"]
        if podman("image", "exists", ref, check=False).returncode == 0:
            present.append(ref)
        else:
            wanted.setdefault(entry["file"], []).append(ref)
    for file, want in wanted.items():  # each archive once (a bundle holds one multi-image archive)
        say(f"podman load {file} ({len(want)} image(s) missing here)")
        podman("load", "-q", "-i", str(workdir / file))
        for ref in want:
            if podman("image", "exists", ref, check=False).returncode != 0:
                raise BundleError([f"image {ref}: podman load of {file} did not restore it"])
            loaded.append(ref)
    shutil.rmtree(workdir / "images", ignore_errors=True)  # loaded: no need to keep a second copy
    if venv is not None:
        pip = venv / "bin" / "pip"
        if not pip.exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}")
        own = manifest["wheels"]["govcloud"]["file"]
        say(f"pip install --no-index into {venv}")
        _run([str(pip), "install", "-q", "--no-index", "--find-links", str(workdir / "wheels"),
              "-c", str(workdir / "python" / "constraints.txt"), "-r", str(workdir / "python" / "requirements.txt"),
              str(workdir / own)], "pip install --no-index", env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    return Installed(loaded, present, apt, time.monotonic() - t0)


__all__ = ["BundleError", "create", "install", "norm", "verify"]
