"""Where a stack's backups live: a local restic repository on the local target, Swift on clouds.

The Swift container's name comes from ``infra.cloud.tags.backup_containers``, the function the Pulumi
program names it with. On a cloud stack Pulumi owns the container, so a missing one is an error; a
local-target stack that sends its backups to Swift (``backup.repository: swift``) creates it itself,
with the stack's metadata so the orphan sweep finds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infra.cloud.tags import RESTIC, Tagger, backup_containers
from infra.model import StackModel
from infra.ops.restic import Restic, ResticError
from infra.state import StackState

PASSWORD_GROUP, PASSWORD_KEY = "restic", "password"
SWIFT_PREFIX = "/restic"


def backup_root() -> Path:
    env = os.environ.get("GOVCLOUD_BACKUP_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "govcloud" / "backups"


def uses_swift(model: StackModel) -> bool:
    return model.backup.repository == "swift" or (model.backup.repository == "auto" and model.target != "local")


def swift_container(model: StackModel) -> str:
    return backup_containers(Tagger.from_model(model))[RESTIC]


def repository_url(model: StackModel) -> str:
    if uses_swift(model):
        return f"swift:{swift_container(model)}:{SWIFT_PREFIX}"
    return str(backup_root() / model.name)


def _swift_env(model: StackModel, create: bool) -> dict[str, str]:
    """Authenticate once (a clear line for bad credentials or an unreachable Keystone), check the container."""
    from openstack import exceptions as sdk

    from infra.ops.openstack_api import CloudError, auth_env, cloud_errors, connect

    conn = connect(model)
    container = swift_container(model)
    with cloud_errors(model.cloud.cloud):
        try:
            conn.object_store.get_container_metadata(container)
        except sdk.NotFoundException:
            if not create or model.target != "local":
                fix = (f"'pulumi up -s {model.name}' creates it" if model.target != "local"
                       else f"'govcloud backup -s {model.name}' creates it")
                raise CloudError(f"cloud {model.cloud.cloud!r}: Swift container {container!r} does not exist: {fix}") from None
            conn.object_store.create_container(name=container)
            meta = Tagger.from_model(model).metadata("storage", **{"govcloud-backup-of": RESTIC})
            store: Any = conn.object_store  # its stubs type **metadata as the 'refresh' flag
            store.set_container_metadata(container, **meta)
    return auth_env(conn)


def open_repository(model: StackModel, create: bool = False) -> Restic:
    """The stack's repository; its password is generated once into the stack's state (0600)."""
    state = StackState(model.name)
    password = state.ensure({PASSWORD_GROUP: [PASSWORD_KEY]})[PASSWORD_GROUP][PASSWORD_KEY]
    extra = _swift_env(model, create) if uses_swift(model) else {}
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
    extra = _swift_env(model, create=False) if uses_swift(model) else {}
    repo = Restic(repository_url(model), password, extra)
    if not repo.exists():
        raise ResticError(f"stack {model.name}: no backup repository at {repo.repository}: {hint}")
    return repo
