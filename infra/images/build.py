"""Build every image the platform needs without a registry and without network inside builds.

Three layers, each tagged by a hash of its inputs so an unchanged layer is never rebuilt:
``base`` (debootstrap bookworm rootfs, imported), ``python`` (base + venv installed offline from the
host-built wheelhouse, the same path an air-gapped install takes) and one image per component.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.contract import COMPONENTS_DIR, ComponentSpec
from infra.runtime.podman import podman

REPO = COMPONENTS_DIR.parent
BODIES = REPO / "infra" / "data" / "bodies.yaml"
REGISTRY = "localhost/govcloud"
MIRROR = os.environ.get("GOVCLOUD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BASE_PACKAGES = ["python3", "python3-venv", "ca-certificates", "tzdata"]
PYTHON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Progress = Callable[[str], None]


def cache_dir() -> Path:
    return Path(os.environ.get("GOVCLOUD_CACHE_DIR", Path.home() / ".cache" / "govcloud"))


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str

    def __str__(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.tag}"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tree_digest(*roots: Path) -> str:
    h = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts:
                h.update(str(path.relative_to(root.parent)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def exists(ref: ImageRef) -> bool:
    return podman("image", "exists", str(ref), check=False).returncode == 0


def base_ref() -> ImageRef:
    return ImageRef("base", _digest(SUITE, MIRROR.rstrip("/").rsplit("/", 1)[-1], *BASE_PACKAGES, "v1"))


def build_base(say: Progress) -> ImageRef:
    ref = base_ref()
    if exists(ref):
        return ref
    say(f"debootstrap {SUITE} (minbase) for {ref}")
    with tempfile.TemporaryDirectory(prefix="govcloud-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), MIRROR],
            check=True, capture_output=True,
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--change", f"ENV PATH={PYTHON_PATH}", "--change", 'CMD ["/bin/bash"]', "-", str(ref),
               stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError("tar of the base rootfs failed")
    return ref


def wheelhouse(say: Progress) -> Path:
    """Host-built wheels for components/requirements.txt under constraints.txt (cached, grows)."""
    reqs, cons = REPO / "components/requirements.txt", REPO / "constraints.txt"
    house = cache_dir() / "wheelhouse"
    marker = house / f".complete-{_digest(reqs.read_bytes(), cons.read_bytes())}"
    if marker.exists():
        return house
    say("building the wheelhouse (offline installs for images)")
    house.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house), "-r", str(reqs), "-c", str(cons)],
        check=True, capture_output=True,
    )
    marker.touch()
    return house


def python_ref(base: ImageRef) -> ImageRef:
    reqs, cons = REPO / "components/requirements.txt", REPO / "constraints.txt"
    return ImageRef("python", _digest(str(base), reqs.read_bytes(), cons.read_bytes(), "v1"))


def build_python(base: ImageRef, say: Progress) -> ImageRef:
    ref = python_ref(base)
    if exists(ref):
        return ref
    house = wheelhouse(say)
    say(f"python runtime {ref}")
    with tempfile.TemporaryDirectory(prefix="govcloud-ctx-") as tmp:
        ctx = Path(tmp)
        shutil.copy(REPO / "components/requirements.txt", ctx / "requirements.txt")
        shutil.copy(REPO / "constraints.txt", ctx / "constraints.txt")
        (ctx / "Containerfile").write_text(
            f"FROM {base}\n"
            "COPY requirements.txt constraints.txt /tmp/\n"
            "RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --find-links /wheels "
            "-r /tmp/requirements.txt -c /tmp/constraints.txt && rm -rf /root/.cache /tmp/*.txt\n"
            f"ENV PATH=/opt/venv/bin:{PYTHON_PATH} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
        )
        _build(ctx, ref, volumes=[f"{house}:/wheels:ro"])
    return ref


def _build(ctx: Path, ref: ImageRef, volumes: list[str] | None = None) -> None:
    flags = [arg for v in volumes or [] for arg in ("-v", v)]
    podman("build", "-q", "--network", "host", "--layers=false", *flags, "-t", str(ref), "-f",
           str(ctx / "Containerfile"), str(ctx))


def component_ref(spec: ComponentSpec, parent: ImageRef) -> ImageRef:
    return ImageRef(spec.name, _digest(str(parent), _tree_digest(spec.directory, COMPONENTS_DIR / "common"),
                                       BODIES.read_bytes(), spec.model_dump_json()))


def build_component(spec: ComponentSpec, parent: ImageRef, say: Progress) -> ImageRef:
    ref = component_ref(spec, parent)
    if exists(ref):
        return ref
    say(f"image {ref}")
    with tempfile.TemporaryDirectory(prefix="govcloud-ctx-") as tmp:
        ctx = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "tests")
        shutil.copytree(spec.directory, ctx / "app", ignore=ignore)
        shutil.copytree(COMPONENTS_DIR / "common", ctx / "common", ignore=ignore)
        shutil.copy(BODIES, ctx / "common" / "bodies.yaml")  # the one list of bodies, read by components
        lines = [f"FROM {parent}"]
        if spec.image.apt:
            lines.append(
                "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                f"--no-install-recommends {' '.join(spec.image.apt)} >/dev/null && rm -rf /var/lib/apt/lists/*"
            )
        lines += [
            f"RUN (getent group {spec.user} || groupadd -g {spec.user} app) && "
            f"(getent passwd {spec.user} || useradd -u {spec.user} -g {spec.user} -M -d /tmp -s /usr/sbin/nologin app)",
            "COPY common /opt/govcloud/common",
            f"COPY app /opt/govcloud/{spec.name}",
            f"ENV PYTHONPATH=/opt/govcloud/common:/opt/govcloud/{spec.name} "
            "GOVCLOUD_BODIES_FILE=/opt/govcloud/common/bodies.yaml",
            f"WORKDIR /opt/govcloud/{spec.name}",
            f"USER {spec.user}",
            f"LABEL io.govcloud.component={spec.name}",
        ]
        if spec.image.stop_signal:
            lines.append(f"STOPSIGNAL {spec.image.stop_signal}")
        (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
        _build(ctx, ref)
    return ref


def image_for(spec: ComponentSpec) -> ImageRef:
    """The content tag a component's image has (or will have) without building anything."""
    base = base_ref()
    parent = python_ref(base) if spec.image.base == "python" else base
    return component_ref(spec, parent)


def build_all(specs: list[ComponentSpec], say: Progress) -> dict[str, ImageRef]:
    base = build_base(say)
    python: ImageRef | None = None
    refs: dict[str, ImageRef] = {}
    for spec in specs:
        if spec.image.base == "python":
            python = python or build_python(base, say)
            refs[spec.name] = build_component(spec, python, say)
        else:
            refs[spec.name] = build_component(spec, base, say)
    return refs
