"""Shared CLI plumbing: the stack option, rich console, progress, and one-line errors."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

console = Console(stderr=True, log_path=False)
out = Console()

StackOpt = typer.Option(os.environ.get("GOVCLOUD_STACK", "local"), "--stack", "-s", help="stack name (stacks/Pulumi.<stack>.yaml)")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step; each finished step is printed as a line."""
    with console.status(title) as status:

        def say(msg: str) -> None:
            console.log(msg)
            status.update(f"{title}: {msg}")

        yield say
