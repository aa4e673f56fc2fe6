"""Where a stack's backups live: a local restic repository on the local target, Swift on clouds."""

from __future__ import annotations

import os
from pathlib import Path

from infra.model import StackModel
from infra.ops.restic import Restic, ResticError
from infra.state import StackState

PASSWORD_GROUP, PASSWORD_KEY = "restic", "password"


def backup_root() -> Path:
    env = os.environ.get("GOVCLOUD_BACKUP_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "govcloud" / "backups"


def repository_url(model: StackModel) -> str:
    if model.target == "local":
        return str(backup_root() / model.name)
    return f"swift:govcloud-{model.name}-backups:/restic"


def open_repository(model: StackModel, create: bool = False) -> Restic:
    """The stack's repository; its password is generated once into the stack's state (0600)."""
    state = StackState(model.name)
    password = state.ensure({PASSWORD_GROUP: [PASSWORD_KEY]})[PASSWORD_GROUP][PASSWORD_KEY]
    extra: dict[str, str] = {}
    if model.target != "local":
        from infra.ops.cloud_credentials import restic_env

        extra = restic_env(model)
    repo = Restic(repository_url(model), password, extra)
    if create:
        repo.init_if_needed()
    return repo


def open_existing(model: StackModel) -> Restic:
    """The stack's repository for reading only (drills): writes nothing, not even a password, to its state."""
    password = StackState(model.name).all().get(PASSWORD_GROUP, {}).get(PASSWORD_KEY)
    hint = f"run `govcloud backup -s {model.name}` first"
    if not password:
        raise ResticError(f"stack {model.name} has never been backed up (no repository password in its state): {hint}")
    extra: dict[str, str] = {}
    if model.target != "local":
        from infra.ops.cloud_credentials import restic_env

        extra = restic_env(model)
    repo = Restic(repository_url(model), password, extra)
    if not repo.exists():
        raise ResticError(f"stack {model.name}: no backup repository at {repo.repository}: {hint}")
    return repo
