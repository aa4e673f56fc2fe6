"""Schema versions of component databases across backups and restores.

A component's schema version is the list of its migrations applied (``schema_migrations``, written by
``govcloud_common.db.migrate`` from ``components/<name>/<name>/migrations/NNN_*.sql``, applied in name order). Every
database backup records the last one applied in the dumped snapshot, as the tag ``schema=NNN_name.sql`` of its facts
snapshot (``pg-backup.sh schema-of-dump``: read in the very transaction the dump was taken from).

A restore puts a database back exactly at the schema it was dumped at (a PostgreSQL dump carries its tables'
definitions, and its own ``schema_migrations``), verifies the data against the facts of that snapshot, and the
component brings it forward when it starts (it migrates before it serves): a backup from before a migration restores
into code that has it, and the new columns take their defaults. :func:`forward` proves that afterwards.
A backup at a schema this code does not know (taken by newer code) is refused before anything changes: older code
on a newer schema would run against tables it does not know. Backups taken before versions were recorded carry no
tag; they are older than this code by construction and restore as before.
"""

from __future__ import annotations

import json

from infra.contract import COMPONENTS_DIR
from infra.ops.backup import PG_TOOL, BackupError
from infra.ops.restic import Snapshot
from infra.runtime.base import Runtime

TAG = "schema"


def code_migrations(component: str) -> list[str]:
    """The migrations this code of ``component`` applies, in order (empty: it has none of its own)."""
    folder = COMPONENTS_DIR / component / component / "migrations"
    return sorted(p.name for p in folder.glob("*.sql")) if folder.is_dir() else []


def recorded(facts: Snapshot | None) -> str | None:
    """The last migration applied in a backup (None: not recorded)."""
    return facts.tag(TAG) if facts is not None else None


def tag_for(applied: list[str] | None) -> list[str]:
    return [f"{TAG}={applied[-1]}"] if applied else []


def parse(stdout: bytes) -> list[str] | None:
    """``pg-backup.sh schema|schema-of-dump``: a JSON list of migration names, or null without a migrations table."""
    try:
        doc = json.loads(stdout or b"null")
    except ValueError:
        return None
    return [str(n) for n in doc] if isinstance(doc, list) else None


def refuse_newer(component: str, snap: Snapshot, facts: Snapshot | None) -> None:
    """Raise (one line, naming both versions) when the backup's schema is one this code does not know."""
    at = recorded(facts)
    known = code_migrations(component)
    if at and at not in known:
        raise BackupError(f"{component}: snapshot {snap.id} is at schema {at}, newer than this code knows "
                          f"(its migrations end at {known[-1] if known else 'none'}); restore refused, nothing changed")


def applied(runtime: Runtime, database: str) -> list[str] | None:
    res = runtime.exec("postgres", [PG_TOOL, "schema", database])
    return parse(res.stdout) if res.returncode == 0 else None


def forward(runtime: Runtime, component: str, database: str, facts: Snapshot | None) -> tuple[bool, str]:
    """After the component started on restored data: did it bring the schema forward to its code's? (ok, words)"""
    known = code_migrations(component)
    now = applied(runtime, database)
    if not known or now is None:
        return True, ""
    missing = [m for m in known if m not in now]
    at = recorded(facts)
    if missing:
        return False, f"schema {at or '(not recorded)'} not brought forward on start: {', '.join(missing)} not applied"
    if at is None:
        return True, f"schema at {now[-1]} (the backup's was not recorded)"
    if at == now[-1]:
        return True, f"schema {at}"
    steps = len(known) - known.index(at) - 1 if at in known else len(known)
    return True, f"schema {at} migrated forward on start to {now[-1]} ({steps} migration(s))"
