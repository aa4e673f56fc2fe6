"""Air-gapped install bundles: ``bundle create``, ``bundle verify``, ``bundle install`` (docs/airgap.md)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from infra.cli.common import StackOpt, console, out, progress

bundle_app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _fail(lines: list[str]) -> None:
    for line in lines:
        console.print(f"[red]error[/red]: {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@bundle_app.command("create")
def create_cmd(stack: str = StackOpt,
               output: Path | None = typer.Option(None, "--output", "-o", help="archive (.tar.zst or .tar.gz)"),
               host_packages: bool = typer.Option(True, "--host-packages/--no-host-packages",
                                                  help="include bootstrap-host.sh's Debian packages as .debs")) -> None:
    """Build (or reuse) every image of the stack and write one archive with all an offline install needs."""
    from infra.bundle import BundleError, create
    from infra.bundle.build import govcloud_version
    from infra.manifests.workloads import stack_components
    from infra.model import load_stack

    specs = stack_components(load_stack(stack))
    path = (output or Path(f"govcloud-bundle-{stack}-{govcloud_version()}.tar.zst")).resolve()
    try:
        with progress(f"bundle create {stack}") as say:
            made = create(stack, specs, path, say, with_debs=host_packages)
    except BundleError as exc:
        _fail(exc.lines)
    out.print(f"{made.path}: {made.bytes / 1e6:.1f} MB, {made.images} image(s), {made.wheels} wheel(s), "
              f"{made.debs} deb(s) in {made.seconds:.1f}s")


@bundle_app.command("verify")
def verify_cmd(file: Path = typer.Argument(..., help="the bundle archive")) -> None:
    """Checksums of every file, manifest, and completeness against this checkout; exit 2 on any problem."""
    from infra.bundle import BundleError, verify

    try:
        with progress(f"bundle verify {file}") as say:
            say("reading and hashing every file")
            manifest = verify(file)
    except BundleError as exc:
        _fail(exc.lines)
    out.print(f"{file}: ok (govcloud {manifest['govcloud']}, stack {manifest['stack']}, "
              f"{len(manifest['images'])} image(s), {len(manifest['wheels'])} wheel(s), {len(manifest['debs'])} deb(s))")


@bundle_app.command("install")
def install_cmd(file: Path = typer.Argument(..., help="the bundle archive"),
                venv: Path | None = typer.Option(None, "--venv", help="also install the wheels offline into this venv"),
                host_packages: bool = typer.Option(False, "--host-packages",
                                                   help="run apt-get install from the bundle's .debs (root)"),
                workdir: Path | None = typer.Option(None, "--workdir", help="where the bundle is unpacked")) -> None:
    """Verify, load the images (content tags: `govcloud up` builds nothing), optionally wheels and .debs."""
    from infra.bundle import BundleError, install
    from infra.model import state_root

    where = (workdir or state_root() / "bundle").resolve()
    try:
        with progress(f"bundle install {file}") as say:
            done = install(file, where, say, venv=venv, run_apt=host_packages)
    except BundleError as exc:
        _fail(exc.lines)
    out.print(f"images: {len(done.loaded)} loaded, {len(done.present)} already present ({done.seconds:.1f}s)")
    for ref in done.loaded:
        out.print(f"  loaded {ref}")
    if done.apt and not host_packages:
        out.print("host packages (run as root, or re-run with --host-packages):")
        for cmd in done.apt:
            out.print("  " + shlex.join(cmd), soft_wrap=True, highlight=False)


@bundle_app.command("mirror")
def mirror_cmd(file: Path = typer.Argument(..., help="the bundle archive"),
               to: Path = typer.Option(..., "--to", help="directory a web server serves as the cluster's mirror"),
               stack: str = typer.Option(..., "--stack", "-s",
                                         help="the cluster stack (domain, Kubernetes version) the mirror is for"),
               url: str | None = typer.Option(None, "--url", help="URL the mirror is served at [https://mirror.<domain>]"),
               registry: str | None = typer.Option(None, "--registry", help="the stack's registry [registry.<domain>]"),
               ) -> None:
    """Verify, then lay the bundle out for the cluster path: signed partial Debian archives, an OCI image
    layout with a push script, wheels, the roles' mirror variables and what the operator adds."""
    import shutil
    import tempfile

    from infra.bundle import BundleError, verify
    from infra.bundle.mirror import mirror
    from infra.model import StackError, load_stack

    try:
        model = load_stack(stack)
    except StackError as exc:
        _fail(exc.lines)
    dest = to.resolve()
    if dest.exists() and any(dest.iterdir()):
        _fail([f"{dest}: not empty (the mirror is written into an empty directory)"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    # unpacked beside the mirror (same filesystem: the .debs are hard-linked into it), removed after
    unpacked = Path(tempfile.mkdtemp(prefix=".govcloud-bundle-", dir=dest.parent))
    try:
        with progress(f"bundle mirror {file}") as say:
            say("reading and verifying the bundle")
            try:
                manifest = verify(file, extract_to=unpacked)
                made = mirror(manifest, unpacked, dest, url or f"https://mirror.{model.domain}",
                              registry or f"registry.{model.domain}", stack, model.cluster.kubernetes_version, say)
            finally:
                shutil.rmtree(unpacked, ignore_errors=True)
    except BundleError as exc:
        shutil.rmtree(dest, ignore_errors=True)  # nothing half-written is left to be served
        _fail(exc.lines)
    out.print(f"{made.dest}: {made.files} file(s), {len(made.images)} component image(s), "
              f"{made.debs_placed} .deb(s) in the Debian archives"
              + (f", {len(made.debs_unplaced)} in debs-unsigned/ (no signed index lists them)"
                 if made.debs_unplaced else ""))
    out.print(f"  roles:  govcloud cluster converge -s {stack} --vars {made.dest / 'mirror-vars.yml'}")
    out.print(f"  images: {made.dest / 'images' / 'push.sh'}, then merge {made.dest / 'stack-images.yaml'}")
    out.print(f"  still to add (not in Debian): {made.dest / 'OPERATOR-ADDS.md'}")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle", help="air-gapped install bundles: create, verify, install")
