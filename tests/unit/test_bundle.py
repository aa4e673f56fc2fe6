"""Bundle manifest, checksums and index logic on small fake bundles (no podman, no apt, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.bundle.build import apt_commands, essential, host_packages, parse_depends, prepare_apt, runtime_requirements
from infra.bundle.content import (
    FORMAT,
    MANIFEST,
    BundleError,
    check,
    deb_name_version,
    debian_index_entries,
    pack,
    parse_constraints,
    read,
    read_manifest,
    wheel_name_version,
    write_sums,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"base": "localhost/govcloud/base:aaaa", "postgres": "localhost/govcloud/postgres:bbbb"}
PINS = {"pyyaml": "6.0.4", "govcloud": "0.1.0"}


def fake_bundle(tmp_path: Path, suffix: str = ".tar.gz", images: dict[str, str] | None = None) -> Path:
    root = tmp_path / "content"
    (root / "images").mkdir(parents=True)
    (root / "wheels").mkdir()
    man_images = {}
    for name, ref in (IMAGES if images is None else images).items():
        rel = f"images/{name}.tar"
        (root / rel).write_bytes(name.encode() * 5000)
        man_images[name] = {"ref": ref, "file": rel}
    wheels = {}
    for fn in ("PyYAML-6.0.4-cp311-cp311-manylinux_2_17_x86_64.whl", "govcloud-0.1.0-py3-none-any.whl"):
        (root / "wheels" / fn).write_bytes(fn.encode())
        name, version = wheel_name_version(fn)
        wheels[name] = {"version": version, "file": f"wheels/{fn}"}
    manifest = {"format": FORMAT, "govcloud": "0.1.0", "stack": "t", "images": man_images, "wheels": wheels,
                "debs": {}}
    (root / MANIFEST).write_text(json.dumps(manifest))
    write_sums(root)
    archive = tmp_path / f"bundle{suffix}"
    pack(root, archive)
    return archive


def problems(archive: Path, images: dict[str, str] | None = None, reqs: tuple[str, ...] = ("pyyaml",)) -> list[str]:
    return check(read(archive), IMAGES if images is None else images, list(reqs), PINS)


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.zst"])
def test_good_bundle_has_no_problems(tmp_path: Path, suffix: str) -> None:
    archive = fake_bundle(tmp_path, suffix)
    assert problems(archive) == []
    out = tmp_path / "x"
    got = read(archive, extract_to=out)
    assert (out / "images/postgres.tar").read_bytes() == b"postgres" * 5000
    assert got.manifest and got.manifest["images"]["base"]["ref"] == IMAGES["base"]


def test_tampered_file_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "content"
    archive = fake_bundle(tmp_path)
    data = bytearray((root / "images/postgres.tar").read_bytes())
    data[100] ^= 1  # one flipped byte
    (root / "images/postgres.tar").write_bytes(bytes(data))
    pack(root, archive)  # re-packed without re-hashing
    lines = problems(archive)
    assert len(lines) == 1 and lines[0].startswith("images/postgres.tar: checksum mismatch"), lines


def test_missing_image_is_one_line(tmp_path: Path) -> None:
    archive = fake_bundle(tmp_path, images={"base": IMAGES["base"]})
    assert problems(archive) == [f"image postgres ({IMAGES['postgres']}): missing from the bundle"]


def test_image_from_another_commit(tmp_path: Path) -> None:
    archive = fake_bundle(tmp_path)
    lines = problems(archive, images={**IMAGES, "postgres": "localhost/govcloud/postgres:cccc"})
    assert len(lines) == 1 and "this checkout needs localhost/govcloud/postgres:cccc" in lines[0]


def test_file_removed_after_hashing(tmp_path: Path) -> None:
    root = tmp_path / "content"
    archive = fake_bundle(tmp_path)
    (root / "wheels/govcloud-0.1.0-py3-none-any.whl").unlink()
    pack(root, archive)
    lines = problems(archive)
    assert "wheels/govcloud-0.1.0-py3-none-any.whl: listed in SHA256SUMS but missing from the bundle" in lines
    assert "wheels.govcloud: file wheels/govcloud-0.1.0-py3-none-any.whl missing from the bundle" in lines


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.zst"])
def test_truncated_archive_is_one_line(tmp_path: Path, suffix: str) -> None:
    archive = fake_bundle(tmp_path, suffix)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    lines = problems(archive)
    assert len(lines) == 1 and "truncated or corrupt archive" in lines[0], lines


def test_missing_wheel_and_wrong_pin(tmp_path: Path) -> None:
    archive = fake_bundle(tmp_path)
    lines = check(read(archive), IMAGES, ["pyyaml", "rich"], {**PINS, "pyyaml": "6.0.5"})
    assert lines == ["wheel rich: missing from the bundle (a runtime dependency)",
                     "wheel pyyaml: bundle has 6.0.4, constraints.txt pins 6.0.5"]


def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "x.tar.gz").write_bytes(b"hello")
    assert len(problems(tmp_path / "x.tar.gz")) == 1
    assert problems(tmp_path / "nope.tar.gz") == [f"{tmp_path / 'nope.tar.gz'}: no such bundle file"]


def test_names_and_pins() -> None:
    assert wheel_name_version("python_pkcs11-0.10.1-cp311-cp311-linux_x86_64.whl") == ("python-pkcs11", "0.10.1")
    assert deb_name_version("podman_4.3.1%2bds1-8%2bb1_amd64.deb") == ("podman", "4.3.1+ds1-8+b1", "amd64")
    assert deb_name_version("tzdata_2024a-0%2bdeb12u1_all.deb")[1] == "2024a-0+deb12u1"
    pins = parse_constraints((ROOT / "constraints.txt").read_text())
    assert pins["pyyaml"] and pins["django-ca"] and "govcloud" not in pins
    # every runtime requirement is pinned, so the wheelhouse is reproducible
    assert [r for r in runtime_requirements() if r not in pins and r != "govcloud"] == []


def test_deb_resolution_parsing() -> None:
    depends = "podman\n  Depends: conmon\n  Depends: <libc6:i386>\nconmon\n<python3:any>\nlibc6:i386\nlibc6\n"
    assert parse_depends(depends) == ["conmon", "libc6", "podman"]
    show = ("Package: libc6\nPriority: required\n\nPackage: bash\nEssential: yes\nPriority: required\n\n"
            "Package: podman\nPriority: optional\n")
    assert essential(show) == {"libc6", "bash"}
    assert {"podman", "runc", "dpkg-dev"} <= set(host_packages())


def test_local_index_and_apt_commands(tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    index = "Package: podman\nVersion: 4.3.1+ds1-8+b1\nFilename: ./podman_4.3.1%2bds1-8%2bb1_amd64.deb\n\n" \
            "Package: runc\nVersion: 1.1.5+ds1-1+deb12u1\n  continued: line\n"
    assert debian_index_entries(index) == {"podman": "4.3.1+ds1-8+b1", "runc": "1.1.5+ds1-1+deb12u1"}
    prepare_apt(debs)
    assert (debs / ".sources.list").read_text() == f"deb [trusted=yes] file:{debs.resolve()} ./\n"
    update, install = apt_commands(debs, ["podman", "runc"])
    assert update[-1] == "update" and f"Dir::State::Lists={debs}/.apt-lists" in update
    assert "Dir::Etc::SourceParts=/dev/null" in install and install[-2:] == ["podman", "runc"]


def test_cli_verify_exits_2_one_line_per_problem(tmp_path: Path) -> None:
    archive = fake_bundle(tmp_path, images={"base": IMAGES["base"]})
    proc = subprocess.run([sys.executable, "-m", "infra.cli", "bundle", "verify", str(archive)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "300"}, check=False)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors and all(len(e) < 300 for e in errors)
    assert any("stack t: not known in this checkout" in e for e in errors), proc.stderr


def test_cli_install_refuses_a_tampered_bundle_before_loading(tmp_path: Path) -> None:
    root = tmp_path / "content"
    archive = fake_bundle(tmp_path)
    (root / "images/base.tar").write_bytes(b"x" + (root / "images/base.tar").read_bytes()[1:])
    pack(root, archive)
    env = {**os.environ, "COLUMNS": "300"}
    proc = subprocess.run([sys.executable, "-m", "infra.cli", "bundle", "install", str(archive), "--workdir",
                           str(tmp_path / "w")], capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: images/base.tar: checksum mismatch" in proc.stderr
    assert "loaded" not in proc.stdout
    assert not (tmp_path / "w").exists()  # nothing of a refused bundle is kept


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.zst"])
def test_read_manifest_reads_only_the_first_member(tmp_path: Path, suffix: str) -> None:
    archive = fake_bundle(tmp_path, suffix)
    assert read_manifest(archive)["images"]["postgres"]["ref"] == IMAGES["postgres"]
    (tmp_path / "x.tar.gz").write_bytes(b"hello")
    with pytest.raises(BundleError, match=r"no readable manifest\.json"):
        read_manifest(tmp_path / "x.tar.gz")
