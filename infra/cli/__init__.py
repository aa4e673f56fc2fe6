"""The ``govcloud`` command line."""

from infra.cli.app import main

__all__ = ["main"]
