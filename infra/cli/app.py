"""``govcloud``: bring stacks up and down, inspect them, render what would be applied."""

from __future__ import annotations

import json
import sys

import typer
import yaml
from rich.table import Table

from infra.cli.common import JsonOpt, StackOpt, console, out, progress
from infra.model import StackError, list_stacks, load_stack
from infra.runtime.base import Runtime

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _runtime(stack: str) -> Runtime:
    from infra.runtime.select import runtime_for

    return runtime_for(load_stack(stack))


@app.command()
def up(stack: str = StackOpt) -> None:
    """Bring the stack's platform up (builds images offline, starts components in order, waits ready)."""
    rt = _runtime(stack)
    with progress(f"up {stack}") as say:
        statuses = rt.up(say)
    table = Table(title=f"stack {stack}")
    for col in ("component", "state", "ready", "endpoint"):
        table.add_column(col)
    for s in statuses:
        table.add_row(s.component, s.state, "yes" if s.ready else f"no: {s.reason}", s.endpoint)
    out.print(table)
    portal = next((s for s in statuses if s.component == "portal"), None)
    if portal:
        out.print(f"portal: {portal.endpoint}/")


@app.command()
def down(stack: str = StackOpt,
         volumes: bool = typer.Option(False, "--purge", "--volumes", help="also delete data, secrets and state")) -> None:
    """Stop the stack (data kept unless --volumes)."""
    rt = _runtime(stack)
    with progress(f"down {stack}") as say:
        removed = rt.down(say, volumes=volumes)
    out.print(f"removed {len(removed)} object(s)")


@app.command()
def status(stack: str = StackOpt, as_json: bool = JsonOpt) -> None:
    """Each component's state and readiness."""
    statuses = _runtime(stack).status()
    if as_json:
        out.print_json(json.dumps([s.__dict__ for s in statuses]))
    else:
        table = Table(title=f"stack {stack}")
        for col in ("component", "state", "ready", "endpoint"):
            table.add_column(col)
        for s in statuses:
            table.add_row(s.component, s.state, "yes" if s.ready else f"no: {s.reason}", s.endpoint)
        out.print(table)
    if not all(s.ready for s in statuses):
        raise typer.Exit(1)


@app.command()
def render(stack: str = StackOpt, component: str | None = typer.Option(None, "--component", "-c")) -> None:
    """Print exactly the manifests that would be applied for the stack."""
    from infra.manifests.render import render_stack

    docs = render_stack(load_stack(stack), component)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))


@app.command()
def validate(stacks: list[str] = typer.Argument(None, help="stack names (default: all)")) -> None:
    """Load stack files and report every problem, one line each."""
    problems: list[str] = []
    names = stacks or list_stacks()
    for name in names:
        try:
            load_stack(name)
        except StackError as exc:
            problems += exc.lines
    for line in dict.fromkeys(problems):
        console.print(f"[red]error[/red]: {line}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    out.print(f"{len(names)} stack(s) valid: {', '.join(names)}")


@app.command("stacks")
def stacks_cmd() -> None:
    """List known stacks."""
    for name in list_stacks():
        out.print(name)


def main() -> None:
    from infra.cli import register

    register.all_commands(app)
    from infra.ops.backup import BackupError
    from infra.ops.envs import EnvError
    from infra.ops.openstack_api import CloudError
    from infra.ops.pulumi_stack import CloudStackError
    from infra.ops.restic import ResticError
    from infra.runtime.kubernetes import DeployError
    from infra.runtime.podman import PodmanError
    from infra.state import StateError

    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (StackError, PodmanError, StateError, BackupError, ResticError, DeployError,
            EnvError, CloudStackError, CloudError) as exc:
        for line in str(exc).splitlines():
            console.print(f"[red]error[/red]: {line}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted: run the same command again to finish (it picks up where it stopped)")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
