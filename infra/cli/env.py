"""``govcloud env``: ephemeral environments for CI — create, list, destroy, expire."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import typer
from rich.table import Table

from infra.cli.common import JsonOpt, out, progress

env_app = typer.Typer(no_args_is_help=True, help=__doc__)


def _human(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


@env_app.command("create")
def create(name: str, base: str = typer.Option("ci", "--from", help="base stack"),
           ttl: str = typer.Option("2h", "--ttl", help="time to live: 90m, 2h, 1d"),
           target: str | None = typer.Option(None, "--target", help="local | openstack (default: the base's)"),
           as_json: bool = JsonOpt) -> None:
    """Create an environment from a base stack and bring it up; prints its endpoints."""
    from infra.model import load_stack
    from infra.ops import envs
    from infra.runtime.select import runtime_for

    rec = envs.create(name, base, ttl, target)
    model = load_stack(name)
    try:
        with progress(f"env {name}") as say:
            if rec.target == "openstack":
                from infra.ops.pulumi_stack import up_cloud_stack

                up_cloud_stack(model, say)  # the cloud first; workloads follow with `govcloud deploy`
            statuses = runtime_for(model).up(say)
    except BaseException:
        out.print(f"environment {name} did not come up; it is kept for inspection: "
                  f"`govcloud status -s {name}`, then `govcloud env destroy {name}`")
        raise
    endpoints = {s.component: s.endpoint for s in statuses}
    if as_json:
        out.print_json(json.dumps({"name": name, "target": rec.target, "expires": rec.expires.isoformat(),
                                   "endpoints": endpoints}))
    else:
        for comp, url in endpoints.items():
            out.print(f"{comp:12} {url}")
        out.print(f"environment {name} is up; expires {rec.expires:%Y-%m-%d %H:%M} UTC")


@env_app.command("list")
def list_envs(as_json: bool = JsonOpt) -> None:
    """Environments with their age, TTL left and status."""
    from infra.model import load_stack
    from infra.ops import envs
    from infra.runtime.select import runtime_for

    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    for rec in envs.records():
        try:
            statuses = runtime_for(load_stack(rec.name)).status() if rec.target == "local" else []
            ready = sum(s.ready for s in statuses)
            status = "expired" if rec.ttl_left_s(now) <= 0 else (
                "ready" if statuses and ready == len(statuses) else f"{ready}/{len(statuses)} ready")
        except Exception as exc:
            status = f"unknown ({exc})"
        age = int((now - datetime.fromisoformat(rec.created)).total_seconds())
        rows.append({"name": rec.name, "target": rec.target, "base": rec.base, "age_s": age,
                     "ttl_left_s": rec.ttl_left_s(now), "status": status})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="environments")
    for col in ("name", "target", "from", "age", "TTL left", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["name"]), str(r["target"]), str(r["base"]), _human(int(str(r["age_s"]))),
                      _human(int(str(r["ttl_left_s"]))), str(r["status"]))
    out.print(table)


@env_app.command("destroy")
def destroy(name: str) -> None:
    """Ordered teardown; re-running it finishes an interrupted destroy."""
    from infra.ops import envs

    with progress(f"destroy {name}") as say:
        removed = envs.destroy(name, say)
    left = envs.leftovers(name)
    out.print(f"environment {name} destroyed: {len(removed)} object(s) removed")
    if left:
        out.print(f"[red]left behind[/]: {', '.join(left)}")
        raise typer.Exit(1)


@env_app.command("gc")
def gc(dry_run: bool = typer.Option(False, "--dry-run")) -> None:
    """Destroy every environment whose TTL has passed (run it from cron or CI)."""
    from infra.ops import envs

    for rec in envs.expired():
        if dry_run:
            out.print(f"would destroy {rec.name} (expired {rec.expires:%Y-%m-%d %H:%M} UTC)")
            continue
        with progress(f"destroy {rec.name}") as say:
            envs.destroy(rec.name, say)
        out.print(f"destroyed expired environment {rec.name}")


@env_app.command("sweep")
def sweep_cmd(stack: str = typer.Option(..., "--stack", "-s", help="the stack whose cloud resources to delete"),
              dry_run: bool = typer.Option(False, "--dry-run", help="list what would be deleted, delete nothing"),
              cloud: str | None = typer.Option(None, "--cloud", help="clouds.yaml entry (default: the stack's)"),
              timeout: float = typer.Option(300.0, "--timeout", help="seconds to keep retrying what the cloud refuses"),
              as_json: bool = JsonOpt) -> None:
    """Delete everything on the cloud tagged with the stack, in dependency order (orphans of a lost teardown)."""
    from infra.model import StackError, list_stacks, load_stack
    from infra.ops.openstack_api import connect
    from infra.ops.sweep import sweep

    try:
        model = load_stack(stack)
    except StackError:
        model = None  # an environment whose stack file is gone: its resources may still be on the cloud
    if model is None and cloud is None:
        cloud = os.environ.get("OS_CLOUD", "govcloud")
    conn = connect(model, cloud=cloud)
    with progress(f"sweep {stack}") as say:
        report = sweep(conn, stack, say, dry_run=dry_run, timeout_s=timeout, other_stacks=list_stacks())
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        table = Table(title=f"sweep of stack {stack}" + (" (dry run)" if dry_run else ""))
        for col in ("kind", "name", "id", "outcome"):
            table.add_column(col)
        for f in report.found:
            outcome = ("would delete" if dry_run else
                       f"[red]left: {report.failed[f]}[/]" if f in report.failed else "deleted")
            table.add_row(f.kind, f.name, f.id, outcome)
        out.print(table if report.found else f"nothing on the cloud is tagged with stack {stack}")
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")
