"""Registers the command groups of each layer (operations, environments, cluster) on the app."""

from __future__ import annotations

import typer


def all_commands(app: typer.Typer) -> None:
    """Each layer adds its commands here."""
    from infra.cli import cluster, deploy, env, ops

    ops.register(app)  # operations: health, backup, restore, drill
    env.register(app)  # ephemeral environments: env create/list/destroy/expire
    deploy.register(app)  # workloads on clusters: deploy, diff
    cluster.register(app)  # hosts: inventory, cluster ...
    __import__("infra.cli.bundle").cli.bundle.register(app)  # air-gapped: bundle create/verify/install
    __import__("infra.cli.payments").cli.payments.register(app)  # payments: reconcile against the settlement file
