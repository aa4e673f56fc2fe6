"""What a bundle holds and how it is checked: layout, manifest, SHA256SUMS, archive reading, verification.

Pure logic (no podman, no apt, no network) so it is tested on small fake bundles.

Layout inside the archive (``manifest.json`` and ``SHA256SUMS`` first, so a streamed read knows them early)::

    manifest.json            versions: govcloud, commit, stack, image refs, wheels, debs
    SHA256SUMS               sha256 of every other file (``sha256sum -c`` format)
    images/images.tar        one multi-image ``podman save`` docker-archive (keeps the content tags; shared layers once)
    wheels/*.whl             govcloud's own wheel and its runtime dependency wheelhouse
    python/constraints.txt   the pins the wheelhouse was built under
    python/requirements.txt  components/requirements.txt (the images' runtime)
    debs/*.deb, debs/Packages      host packages and their local apt index (optional)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
FORMAT = 1


class BundleError(RuntimeError):
    """The bundle cannot be used; each line of the message is one problem."""

    def __init__(self, problems: list[str]):
        self.lines = problems
        super().__init__("\n".join(problems))


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """``foo_bar-1.2-py3-none-any.whl`` → (``foo-bar``, ``1.2``)."""
    parts = Path(filename).name[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise ValueError(f"{filename}: not a wheel file name")
    return norm(parts[0]), parts[1]


def deb_name_version(filename: str) -> tuple[str, str, str]:
    """``podman_4.3.1%2bds1-8%2bb1_amd64.deb`` → (name, version, arch) as apt names them."""
    stem = Path(filename).name[: -len(".deb")]
    name, version, arch = stem.split("_")
    return name, unquote(version), arch


def parse_constraints(text: str) -> dict[str, str]:
    """``name==version`` pins by normalised name (comments and other lines ignored)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[norm(name.split("[", 1)[0].strip())] = version.strip()
    return pins


def requirement_names(lines: list[str]) -> list[str]:
    """Normalised project names of requirement lines (``uvicorn[standard]>=1 ; marker`` → ``uvicorn``)."""
    names = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if m:
            names.append(norm(m.group(0)))
    return names


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_sums(root: Path) -> dict[str, str]:
    """Hash every file under ``root`` (except SHA256SUMS itself) and write SHA256SUMS."""
    sums = {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != SUMS}
    (root / SUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    return sums


def parse_sums(text: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            sums[name.strip().lstrip("*")] = digest.strip()
    return sums


def pack(root: Path, archive: Path) -> None:
    """One tar of ``root`` (zstd for ``.zst``, gzip otherwise), manifest and sums first."""
    first = [n for n in (MANIFEST, SUMS) if (root / n).exists()]
    rest = sorted(p.name for p in root.iterdir() if p.name not in first)
    # --long=30: a 1 GB window finds the base and python layers that every image archive repeats (3x smaller)
    comp = ["--use-compress-program=zstd -T0 -3 -q --long=30"] if archive.name.endswith(".zst") else ["-z"]
    tmp = archive.with_name(archive.name + ".part")
    subprocess.run(["tar", *comp, "-cf", str(tmp), "-C", str(root), *first, *rest], check=True, capture_output=True)
    tmp.replace(archive)


@dataclass
class Contents:
    """What reading a bundle found: each member's sha256, the manifest and sums, and read errors."""

    hashes: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    sums: dict[str, str] | None = None
    errors: list[str] = field(default_factory=list)


@contextmanager
def _stream(archive: Path, errors: list[str], drain: bool = True) -> Iterator[IO[bytes]]:
    if archive.name.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise BundleError([f"{archive}: zstd is needed to read this bundle (apt-get install zstd)"])
        proc = subprocess.Popen(["zstd", "-dcq", "--long=31", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            yield proc.stdout
        finally:
            if not drain:  # the caller read what it wanted: stop zstd
                proc.kill()
            while drain and proc.stdout.read(1 << 20):  # tar's end padding: read it so zstd exits cleanly
                pass
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            if proc.wait() != 0 and drain and not errors:
                errors.append(f"{archive}: truncated or corrupt archive (zstd: {err.splitlines()[-1] if err else 'failed'})")
    else:
        with archive.open("rb") as f:
            yield f


def read(archive: Path, extract_to: Path | None = None) -> Contents:
    """Stream the archive once: hash every member (and write it under ``extract_to`` when given)."""
    got = Contents()
    if not archive.is_file():
        got.errors.append(f"{archive}: no such bundle file")
        return got
    mode = "r|" if archive.name.endswith(".zst") else "r|*"
    try:
        with _stream(archive, got.errors) as raw, tarfile.open(fileobj=raw, mode=mode) as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile():
                    continue
                if name.startswith("/") or ".." in Path(name).parts:
                    got.errors.append(f"{archive}: unsafe member path {member.name!r}")
                    continue
                src = tar.extractfile(member)
                assert src is not None
                h = hashlib.sha256()
                dest = None
                if extract_to is not None:
                    target = extract_to / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    dest = target.open("wb")
                try:
                    data = b""
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        if dest:
                            dest.write(chunk)
                        if name in (MANIFEST, SUMS):
                            data += chunk
                finally:
                    if dest:
                        dest.close()
                got.hashes[name] = h.hexdigest()
                if name == MANIFEST:
                    try:
                        got.manifest = json.loads(data)
                    except ValueError as exc:
                        got.errors.append(f"{MANIFEST}: not valid JSON ({exc})")
                elif name == SUMS:
                    got.sums = parse_sums(data.decode(errors="replace"))
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if not got.errors:
            got.errors.append(f"{archive}: truncated or corrupt archive ({exc or type(exc).__name__})")
    return got


def read_manifest(archive: Path) -> dict[str, Any]:
    """Only the manifest (the archive's first member): what a bundle says it holds, nothing checked."""
    errors: list[str] = []
    mode = "r|" if archive.name.endswith(".zst") else "r|*"
    try:
        with _stream(archive, errors, drain=False) as raw, tarfile.open(fileobj=raw, mode=mode) as tar:  # type: ignore[call-overload]
            for member in tar:
                if member.name.removeprefix("./") == MANIFEST:
                    src = tar.extractfile(member)
                    assert src is not None
                    return dict(json.loads(src.read()))
                break
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise BundleError([f"{archive}: no readable {MANIFEST} ({exc})"]) from None
    raise BundleError([f"{archive}: {MANIFEST} is not the first member (not a govcloud bundle?)"])


def check(got: Contents, images: dict[str, str] | None, requirements: list[str],
          constraints: dict[str, str]) -> list[str]:
    """Every problem with a read bundle, one line each.

    ``images``: component/layer name → the ref this checkout's stack needs (None: don't check images);
    ``requirements``: runtime project names that must have a wheel; ``constraints``: the pins.
    """
    if got.errors:  # an unreadable archive: that one line says it all
        return list(got.errors)
    problems = []
    if got.sums is None:
        problems.append(f"{SUMS}: missing from the bundle")
    if got.manifest is None:
        problems.append(f"{MANIFEST}: missing from the bundle")
    if got.sums is None or got.manifest is None:
        return problems
    for name, digest in got.sums.items():
        if name not in got.hashes:
            problems.append(f"{name}: listed in {SUMS} but missing from the bundle")
        elif got.hashes[name] != digest:
            problems.append(f"{name}: checksum mismatch (sha256 {got.hashes[name][:12]}…, expected {digest[:12]}…)")
    for name in got.hashes:
        if name != SUMS and name not in got.sums:
            problems.append(f"{name}: in the bundle but not in {SUMS}")
    man = got.manifest
    if man.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: format {man.get('format')!r}, this govcloud reads format {FORMAT}")
    listed_images: dict[str, dict[str, str]] = man.get("images", {})
    for section in ("images", "wheels", "debs"):
        for key, entry in man.get(section, {}).items():
            if entry.get("file") not in got.hashes:
                problems.append(f"{section}.{key}: file {entry.get('file')} missing from the bundle")
    for name, ref in (images or {}).items():
        entry = listed_images.get(name)
        if entry is None:
            problems.append(f"image {name} ({ref}): missing from the bundle")
        elif entry.get("ref") != ref:
            problems.append(f"image {name}: bundle has {entry.get('ref')}, this checkout needs {ref} "
                            "(bundle made from another commit?)")
    wheels: dict[str, dict[str, str]] = man.get("wheels", {})
    for req in requirements:
        if req not in wheels:
            problems.append(f"wheel {req}: missing from the bundle (a runtime dependency)")
    for name, entry in wheels.items():
        pin = constraints.get(name)
        if pin and entry.get("version") != pin:
            problems.append(f"wheel {name}: bundle has {entry.get('version')}, constraints.txt pins {pin}")
    return problems


def debian_index_entries(packages_text: str) -> dict[str, str]:
    """Package → Version from a ``Packages`` index (what dpkg-scanpackages wrote)."""
    entries: dict[str, str] = {}
    for stanza in packages_text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Package" in fields:
            entries[fields["Package"]] = fields.get("Version", "")
    return entries
