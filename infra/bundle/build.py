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
    wheel_name_version,
    write_sums,
)
from infra.contract import ComponentSpec
from infra.images.build import REPO, ImageRef, base_ref, build_all, cache_dir, exists, python_ref
from infra.runtime.podman import podman

Progress = Callable[[str], None]
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
        images = {}
        (work / "images").mkdir()
        for name, ref in refs.items():
            if not exists(ref):
                raise BundleError([f"image {ref}: not in podman after the build"])
            rel = f"images/{name}-{ref.tag}.tar"
            say(f"podman save {ref}")
            podman("save", "--format", "docker-archive", "-o", str(work / rel), str(ref))
            images[name] = {"ref": str(ref), "file": rel}
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
        debs = fetch_debs(work / "debs", say) if with_debs else {}
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
        manifest = {
            "format": FORMAT, "govcloud": govcloud_version(), "commit": commit, "stack": stack,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host_packages": host_packages() if with_debs else [],
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


def fetch_debs(dest: Path, say: Progress) -> dict[str, dict[str, str]]:
    """bootstrap-host.sh's packages and their dependencies as .debs, with a Packages.gz index."""
    if shutil.which("dpkg-scanpackages") is None:
        raise BundleError(["dpkg-scanpackages not found: install dpkg-dev (scripts/bootstrap-host.sh does)"])
    names = resolve_debs(host_packages())
    say(f"apt-get download: {len(names)} host package(s)")
    dest.mkdir(parents=True)
    _run(["apt-get", "download", "-q", *names], "apt-get download", cwd=dest)
    say("dpkg-scanpackages: local apt index")
    index = _run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], "dpkg-scanpackages", cwd=dest).stdout
    (dest / "Packages").write_text(index)
    debs = {}
    for deb in sorted(dest.glob("*.deb")):
        name, version, arch = deb_name_version(deb.name)
        debs[name] = {"version": version, "arch": arch, "file": f"debs/{deb.name}"}
    return debs


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
    for name, entry in manifest["images"].items():
        ref = entry["ref"]
        if podman("image", "exists", ref, check=False).returncode == 0:
            present.append(ref)
            continue
        say(f"podman load {ref} ({name})")
        podman("load", "-q", "-i", str(workdir / entry["file"]))
        if podman("image", "exists", ref, check=False).returncode != 0:
            raise BundleError([f"image {name}: podman load did not restore {ref}"])
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
