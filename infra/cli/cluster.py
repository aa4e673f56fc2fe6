"""``govcloud inventory`` and ``govcloud cluster ...``: hosts and Kubernetes through Ansible (playbooks/).

The inventory comes from the stack model plus Pulumi's outputs (``--outputs FILE`` holding
``pulumi stack output --json``, or the Pulumi CLI when neither option is given) or, for VMs handed
over by a data centre, from a plain hosts file (``--hosts FILE``); both give the same inventory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from infra.cli.common import StackOpt, console, out, progress
from infra.model import StackError, load_stack, state_root

OutputsOpt = typer.Option(
    None, "--outputs", help="file with 'pulumi stack output --json' (default: ask the Pulumi CLI)"
)
HostsOpt = typer.Option(None, "--hosts", help="plain hosts file of handed-over VMs (see docs/hosts.md)")
LimitOpt = typer.Option(None, "--limit", help="only these hosts or groups (Ansible pattern)")
TagsOpt = typer.Option(None, "--tags", help="only tasks with these tags (e.g. ssh,firewall)")
CheckOpt = typer.Option(False, "--check", help="dry run: report what would change")
VarsOpt = typer.Option(None, "--vars", help="YAML file of extra variables (mirror URLs, object storage credentials)")

cluster_app = typer.Typer(no_args_is_help=True, help="Harden hosts, bootstrap and operate Kubernetes (Ansible).")

#: command -> (playbook, what it does)
PLAYBOOK_COMMANDS = {
    "converge": ("site.yml", "Everything: harden every host, then containerd, Kubernetes and etcd backups."),
    "harden": ("harden.yml", "Harden every host (users, SSH, sysctl, auditd, time, updates, firewall, CA trust)."),
    "bootstrap": ("bootstrap.yml", "Container runtime, kubeadm control plane and joins, CNI, etcd backup schedule."),
    "upgrade": ("upgrade.yml", "Rolling upgrade to the stack's Kubernetes version, one node at a time."),
    "rotate-certs": ("rotate-certs.yml", "Renew control plane certificates (one node at a time)."),
    "backup-etcd": ("backup-etcd.yml", "Take an etcd snapshot now and ship it to object storage."),
}


def inventory_path(stack: str) -> Path:
    return state_root() / "hosts" / stack / "inventory.yml"


def _build(stack: str, outputs: Path | None, hosts: Path | None, from_cloud: bool = False) -> Path:
    from infra.hosts import build_inventory

    inv = build_inventory(load_stack(stack), outputs=outputs, hosts=hosts, from_cloud=from_cloud)
    return inv.write(inventory_path(stack))


def inventory(
    stack: str = StackOpt,
    outputs: Path | None = OutputsOpt,
    hosts: Path | None = HostsOpt,
    print_: bool = typer.Option(False, "--print", help="print the inventory instead of the path"),
    from_cloud: bool = typer.Option(False, "--from-cloud", help="read the hosts from the cloud (servers tagged "
                                    "with the stack) instead of Pulumi's outputs"),
) -> None:
    """Build the Ansible inventory of the stack (groups bastion, control_plane, workers; SSH via the bastion)."""
    path = _build(stack, outputs, hosts, from_cloud)
    if print_:
        sys.stdout.write(path.read_text(encoding="utf-8"))
    else:
        sys.stdout.write(f"{path}\n")


def _extravars(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StackError([f"{path}: cannot read extra variables ({exc})"]) from None
    if not isinstance(data, dict):
        raise StackError([f"{path}: expected a YAML mapping of variable names to values"])
    return data


def _run(command: str, stack: str, outputs: Path | None, hosts: Path | None, limit: str | None, tags: str | None,
         check: bool, extra: Path | None) -> None:
    from infra.hosts.runner import Say, default_envvars, run_playbook

    playbook = PLAYBOOK_COMMANDS[command][0]
    path = _build(stack, outputs, hosts)
    with progress(f"cluster {command} {stack}") as say:
        result = run_playbook(
            playbook, path, say=cast(Say, say), extravars=_extravars(extra), limit=limit, tags=tags, check=check,
            envvars=default_envvars(),
        )
    table = Table(title=f"{playbook} on stack {stack}")
    for col in ("host", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col)
    for h in result.hosts.values():
        table.add_row(h.host, str(h.ok), str(h.changed), str(h.failed), str(h.unreachable), str(h.skipped))
    out.print(table)
    for failure in result.failures:
        console.print(f"[red]error[/red]: {escape(failure.line())}", highlight=False, soft_wrap=True)
    if not result.ok:
        raise SystemExit(1)  # typer.Exit would be swallowed by app(standalone_mode=False)


def _command(command: str) -> None:
    def run(
        stack: str = StackOpt,
        outputs: Path | None = OutputsOpt,
        hosts: Path | None = HostsOpt,
        limit: str | None = LimitOpt,
        tags: str | None = TagsOpt,
        check: bool = CheckOpt,
        extra: Path | None = VarsOpt,
    ) -> None:
        _run(command, stack, outputs, hosts, limit, tags, check, extra)

    run.__doc__ = PLAYBOOK_COMMANDS[command][1]
    cluster_app.command(command)(run)


for _name in PLAYBOOK_COMMANDS:
    _command(_name)


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory)
    app.add_typer(cluster_app, name="cluster")
