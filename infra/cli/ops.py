"""Operations commands: health, backup, restore, drill."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from infra.cli.common import JsonOpt, StackOpt, out, progress
from infra.model import load_stack
from infra.runtime.select import runtime_for

if TYPE_CHECKING:
    from infra.ops.drill import FreshReport
    from infra.ops.restore import DrillResult

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


def drill(stack: str = StackOpt, component: str | None = typer.Option(None, "--component", "-c",
                                                                       help="restore and verify only this one"),
          snapshot: str | None = typer.Option(None, "--snapshot", help="a database or state snapshot id instead "
                                                                       "of the latest"),
          beside: bool = typer.Option(False, "--beside", help="quick drill: scratch databases in the live "
                                                              "postgres instead of a fresh stack"),
          keep: bool = typer.Option(False, "--keep", help="leave the drill stack up for inspection "
                                                          "(`govcloud env destroy NAME` removes it)"),
          ttl: str = typer.Option("1h", "--ttl", help="the drill stack's TTL (`govcloud env gc` removes it after)"),
          as_json: bool = JsonOpt) -> None:
    """Restore the latest backups into a fresh throwaway stack, verify data and health, report RTO and RPO,
    tear it down leaving nothing (``--beside``: into scratch databases of the live stack instead)."""
    model = load_stack(stack)
    if beside:
        from infra.ops.restore import drill as run_drill

        if snapshot or keep:
            raise typer.BadParameter("--snapshot and --keep go with the fresh-stack drill, not --beside")
        with progress(f"restore drill beside {stack}") as say:
            results = run_drill(model, runtime_for(model), say, only=component)
        ok = bool(results) and all(r.ok for r in results)
        if as_json:
            out.print_json(json.dumps({"mode": "beside", "stack": stack, "ok": ok,
                                       "rto_s": round(sum(r.rto_s for r in results), 2),
                                       "rpo_s": max((r.rpo_s for r in results), default=0.0),
                                       "results": [r.__dict__ for r in results]}))
        else:
            out.print(_results_table(f"restore drill beside {stack}", results))
        if not ok:
            raise typer.Exit(1)
        return
    from infra.ops.drill import drill_name, restore_fresh

    name = drill_name()
    _interrupt_on_sigterm()  # a CI timeout's SIGTERM tears the drill stack down like Ctrl-C does
    with progress(f"restore drill of {stack} into {name}") as say:
        report = restore_fresh(model, name, say, snapshot=snapshot, only=component, ttl=ttl, keep=keep)
    _print_fresh(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


def _interrupt_on_sigterm() -> None:
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _results_table(title: str, results: list[DrillResult]) -> Table:
    table = Table(title=title)
    for col in ("component", "kind", "result", "snapshot", "ready at", "RPO", "tables", "rows", "detail"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(r.component, r.kind, "[green]verified[/]" if r.ok else "[red]failed[/]", r.snapshot,
                      f"{r.rto_s:.1f}s", f"{r.rpo_s / 60:.1f}min", str(r.tables or ""), str(r.rows or ""), r.detail)
    return table


def _print_fresh(report: FreshReport, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    out.print(_results_table(f"restore of {report.stack} into {report.drill_stack}", report.results))
    if report.health:
        table = Table(title=f"health of {report.drill_stack}: {report.health_status}")
        for col in ("layer", "check", "status", "detail"):
            table.add_column(col, overflow="fold")
        for c in report.health:
            table.add_row(c.layer, c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.detail)
        out.print(table)
    out.print("steps (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in report.phases.items()))
    verdict = "[green]verified and healthy[/]" if report.ok else f"[red]FAILED[/] {report.error}"
    where = (f"kept for inspection: `govcloud env destroy {report.drill_stack}`" if report.kept else
             ("torn down, nothing left" if not report.leftovers else f"[red]left behind[/]: {', '.join(report.leftovers)}"))
    out.print(f"{report.drill_stack}: {verdict}; RTO {report.rto_s:.1f}s, RPO {report.rpo_s / 60:.1f}min; {where}")


def restore(stack: str = StackOpt, component: str | None = typer.Option(None, "--component", "-c"),
            snapshot: str | None = typer.Option(None, "--snapshot", help="a database snapshot id instead of the latest"),
            into: str | None = typer.Option(None, "--into", help="restore into a new stack of this name (kept, an "
                                                                 "environment: `govcloud env destroy NAME`)"),
            ttl: str = typer.Option("7d", "--ttl", help="with --into: the new stack's TTL"),
            keep: bool = typer.Option(False, "--keep", help="with --into: keep the new stack even if it failed"),
            yes: bool = typer.Option(False, "--yes", help="confirm: the component is stopped during the restore"),
            as_json: bool = JsonOpt) -> None:
    """Restore a component's database in place (safety backup first, verified, rolled back on failure), or with
    ``--into NEW`` every backup of the stack into a new stack beside it (verified and health-checked, kept)."""
    model = load_stack(stack)
    if into:
        from infra.ops.drill import restore_fresh

        _interrupt_on_sigterm()
        with progress(f"restore {stack} into {into}") as say:
            report = restore_fresh(model, into, say, snapshot=snapshot, only=component, ttl=ttl, keep=True,
                                   keep_failed=keep)
        _print_fresh(report, as_json)
        if not report.ok:
            raise typer.Exit(1)
        return
    from infra.ops.restore import restore as run_restore

    if component is None:
        raise typer.BadParameter("in place, one component at a time: add --component NAME (or --into NEW)")
    if not yes:
        out.print(f"restore replaces {component}'s data in {stack} (a safety backup is taken first); add --yes")
        raise typer.Exit(2)
    with progress(f"restore {component} in {stack}") as say:
        r = run_restore(model, runtime_for(model), component, say, snapshot=snapshot)
    if as_json:
        out.print_json(json.dumps(r.__dict__))
    else:
        out.print(f"{component}: restored {r.snapshot}, verified ({r.detail}) in {r.rto_s:.1f}s"
                  + (f"; {r.schema}" if r.schema else ""))


def register(app: typer.Typer) -> None:
    for fn in (health, backup, restore, drill):
        app.command()(fn)
