"""Registers the command groups of each layer (operations, environments, cluster) on the app."""

from __future__ import annotations

import typer


def all_commands(app: typer.Typer) -> None:
    """Each layer adds its commands here; importing lazily keeps `govcloud --help` fast."""
    __import__("infra.cli.deploy", fromlist=["register"]).register(app)  # cluster: deploy, diff
    __import__("infra.cli.cluster", fromlist=["register"]).register(app)  # hosts: inventory, cluster ...
