"""``govcloud deploy`` and ``govcloud diff``: a cluster stack's manifests applied with the kubernetes client."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from infra.cli.common import StackOpt, console, out, progress


def _runtime(stack: str, timeout: float | None = None):  # type: ignore[no-untyped-def,unused-ignore]
    from infra.model import StackError, load_stack
    from infra.runtime.kubernetes import KubernetesRuntime

    model = load_stack(stack)
    if model.target == "local":
        raise StackError([f"stack {stack}: target is local (podman); use `govcloud up -s {stack}`"])
    rt = KubernetesRuntime(model)
    if timeout is not None:
        rt.rollout_timeout = timeout
    return rt


def _exit(code: int) -> None:
    # SystemExit, not typer.Exit: the app runs click with standalone_mode=False, which returns Exit codes
    sys.exit(code)


def _fail(lines: list[str], code: int = 1) -> None:
    for line in lines:
        console.print(f"[red]error[/red]: {line}", highlight=False, soft_wrap=True)
    _exit(code)


def deploy(
    stack: str = StackOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="server-side dry run: print the diff, change nothing"),
    prune: bool = typer.Option(True, "--prune/--no-prune", help="delete what govcloud applied earlier and no "
                               "longer renders"),
    prune_volumes: bool = typer.Option(False, "--prune-volumes", help="let pruning delete PVCs and namespaces"),
    force_conflicts: bool = typer.Option(False, "--force-conflicts", help="take fields owned by another manager"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds to wait for each phase's rollouts"),
) -> None:
    """Apply the stack to its Kubernetes cluster (server-side apply, ordered, rollouts awaited, pruned)."""
    from infra.runtime.kubernetes import DeployError

    rt = _runtime(stack, timeout)
    try:
        with progress(f"deploy {stack}{' (dry run)' if dry_run else ''}") as say:
            report = rt.deploy(say, dry_run=dry_run, prune=prune, prune_volumes=prune_volumes,
                               force_conflicts=force_conflicts)
    except DeployError as exc:
        _fail(exc.lines)
        return
    if dry_run:
        sys.stdout.write("".join(report.diff))
        changes = sum(1 for _, action in report.applied if action != "unchanged")
        out.print(f"dry run: {changes} object(s) would change, {len(report.pruned)} would be pruned")
        return
    for kept in report.kept:
        console.print(f"kept (holds data; --prune-volumes deletes it): {kept}", highlight=False)
    table = Table(title=f"stack {stack}")
    for col in ("component", "state", "ready", "endpoint"):
        table.add_column(col)
    for s in report.statuses:
        table.add_row(s.component, s.state, "yes" if s.ready else f"no: {s.reason}", s.endpoint)
    out.print(table)
    changed = sum(1 for _, action in report.applied if action != "unchanged")
    out.print(f"applied {len(report.applied)} object(s) ({changed} changed), pruned {len(report.pruned)}")
    if not all(s.ready for s in report.statuses):
        _exit(1)


def diff(stack: str = StackOpt) -> None:
    """Show what `govcloud deploy` would change (server-side dry run); exit 1 when there are differences."""
    from infra.runtime.kubernetes import DeployError

    rt = _runtime(stack)
    try:
        with progress(f"diff {stack}") as say:
            texts = rt.diff(say)
    except DeployError as exc:
        _fail(exc.lines, 2)
        return
    sys.stdout.write("".join(texts))
    if texts:
        _exit(1)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("diff")(diff)
