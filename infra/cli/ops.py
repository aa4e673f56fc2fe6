"""Operations commands: health, backup, restore, drill."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from infra.cli.common import JsonOpt, StackOpt, out, progress
from infra.model import load_stack
from infra.runtime.select import runtime_for

_STYLE = {"ok": "green", "degraded": "yellow", "down": "red"}


def health(stack: str = StackOpt, as_json: bool = JsonOpt,
           journey: bool = typer.Option(True, "--journey/--no-journey", help="run the citizen journey"),
           layer: list[str] = typer.Option([], "--layer", "-l", help="only this layer (repeatable): "
                                           "cloud, components, backups, certificates, journey")) -> None:
    """Every layer's health; exit 0 healthy, 1 degraded, 2 down."""
    from infra.ops.health import LAYERS, exit_code, overall, run_health
    from infra.ops.health import as_json as to_json

    unknown = sorted(set(layer) - set(LAYERS))
    if unknown:
        raise typer.BadParameter(f"unknown layer {', '.join(unknown)} (known: {', '.join(LAYERS)})",
                                 param_hint="--layer")
    model = load_stack(stack)
    checks = run_health(model, runtime_for(model), journey=journey, only=set(layer) or None)
    if as_json:
        out.print_json(json.dumps(to_json(model, checks)))
    else:
        table = Table(title=f"health of {stack}: {overall(checks)}")
        for col in ("layer", "check", "status", "detail"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(c.layer, c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.detail)
        out.print(table)
    raise typer.Exit(exit_code(checks))


def backup(stack: str = StackOpt, component: str | None = typer.Option(None, "--component", "-c"),
           as_json: bool = JsonOpt) -> None:
    """Back up every component's data (or one) into the stack's restic repository."""
    from infra.ops.backup import run_backup

    model = load_stack(stack)
    with progress(f"backup {stack}") as say:
        results = run_backup(model, runtime_for(model), say, only=component)
    if as_json:
        out.print_json(json.dumps([{"item": r.item.key, "ok": r.ok, "snapshot": r.snapshot, "bytes": r.bytes,
                                    "seconds": round(r.seconds, 2), "error": r.error} for r in results]))
    else:
        table = Table(title=f"backup of {stack}")
        for col in ("item", "result", "snapshot", "size", "time"):
            table.add_column(col)
        for r in results:
            table.add_row(r.item.key, "[green]ok[/]" if r.ok else f"[red]failed[/]: {r.error}", r.snapshot,
                          f"{r.bytes / 1e6:.2f} MB", f"{r.seconds:.1f}s")
        out.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def drill(stack: str = StackOpt, component: str | None = typer.Option(None, "--component", "-c"),
          as_json: bool = JsonOpt) -> None:
    """Restore the latest backups into scratch copies and verify them; prints RTO and RPO."""
    from infra.ops.restore import drill as run_drill

    model = load_stack(stack)
    with progress(f"restore drill {stack}") as say:
        results = run_drill(model, runtime_for(model), say, only=component)
    if as_json:
        out.print_json(json.dumps([r.__dict__ for r in results]))
    else:
        table = Table(title=f"restore drill of {stack}")
        for col in ("component", "kind", "result", "snapshot", "RTO", "RPO", "tables", "rows", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(r.component, r.kind, "[green]verified[/]" if r.ok else "[red]failed[/]", r.snapshot,
                          f"{r.rto_s:.1f}s", f"{r.rpo_s / 60:.1f}min", str(r.tables), str(r.rows), r.detail)
        out.print(table)
    if not results or not all(r.ok for r in results):
        raise typer.Exit(1)


def restore(stack: str = StackOpt, component: str = typer.Option(..., "--component", "-c"),
            yes: bool = typer.Option(False, "--yes", help="confirm: the component is stopped during the restore")) -> None:
    """Restore a component's database from its latest backup (safety backup first, verified, rolled back on failure)."""
    from infra.ops.restore import restore as run_restore

    if not yes:
        out.print(f"restore replaces {component}'s data in {stack} (a safety backup is taken first); add --yes")
        raise typer.Exit(2)
    model = load_stack(stack)
    with progress(f"restore {component} in {stack}") as say:
        r = run_restore(model, runtime_for(model), component, say)
    out.print(f"{component}: restored {r.snapshot}, verified ({r.detail}) in {r.rto_s:.1f}s")


def register(app: typer.Typer) -> None:
    for fn in (health, backup, restore, drill):
        app.command()(fn)
