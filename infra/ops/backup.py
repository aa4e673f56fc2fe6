"""``govcloud backup``: each component's data streamed into the stack's restic repository.

What is backed up follows from the contracts: every declared ``database`` (dumped by the postgres
component from one snapshot, with the facts of that snapshot: rows and checksums per table, and its schema version
(the last migration applied, a tag of the facts snapshot: ``infra.ops.schema``)), every
``backup`` hook (e.g. CA keys, already encrypted), and the stack's state (generated secrets).
A dump that fails part-way never leaves a snapshot behind (restic cannot see a producer's exit code).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from infra.contract import ComponentSpec, load_components
from infra.manifests.workloads import stack_components
from infra.model import StackModel
from infra.ops.repository import open_repository
from infra.ops.restic import Restic, ResticError, Snapshot
from infra.runtime.base import Progress, Runtime
from infra.state import StackState

PG_TOOL = "/opt/govcloud/postgres/pg-backup.sh"


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Item:
    """One thing to back up: ``kind`` is database (via postgres), hook (the component's own), or state."""

    component: str
    kind: str
    filename: str

    @property
    def key(self) -> str:
        return f"{self.component}/{self.kind}"


@dataclass
class ItemResult:
    item: Item
    ok: bool
    snapshot: str = ""
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    facts: dict[str, dict[str, object]] = field(default_factory=dict)


def plan(model: StackModel, only: str | None = None) -> list[Item]:
    items: list[Item] = []
    for spec in stack_components(model):
        if only and spec.name != only:
            continue
        if spec.database:
            items.append(Item(spec.name, "database", f"{spec.name}.pgdump"))
        if spec.backup:
            items.append(Item(spec.name, "hook", spec.backup.filename))
    if only is None:
        items.append(Item("govcloud", "state", "state.json"))
    elif not items:
        known = ", ".join(s.name for s in stack_components(model))
        raise BackupError(f"--component {only}: nothing to back up (components of {model.name}: {known})")
    return items


def tags(model: StackModel, item: Item, run_id: str, kind: str | None = None) -> list[str]:
    return [f"govcloud-stack={model.name}", f"component={item.component}", f"kind={kind or item.kind}",
            f"run={run_id}"]


def dump_command(item: Item, spec: ComponentSpec | None) -> tuple[str, list[str]]:
    """(component to exec in, command) producing the item's stream on stdout."""
    if item.kind == "database":
        assert spec is not None and spec.database
        return "postgres", [PG_TOOL, "dump", spec.database]
    assert spec is not None and spec.backup
    return spec.name, spec.backup.dump


class _Counter(threading.Thread):
    """Copies a producer's pipe into restic while counting bytes (progress and the report)."""

    def __init__(self, src: IO[bytes], dst: IO[bytes]):
        super().__init__(daemon=True)
        self.src, self.dst, self.bytes, self.error = src, dst, 0, ""

    def run(self) -> None:
        try:
            while chunk := self.src.read(1 << 20):
                self.bytes += len(chunk)
                self.dst.write(chunk)
        except OSError as exc:
            self.error = str(exc)
        finally:
            self.dst.close()


def stream_into_repository(repo: Restic, runtime: Runtime, component: str, command: list[str], filename: str,
                           snapshot_tags: list[str]) -> tuple[str, int]:
    """Run ``command`` in ``component`` and store its stdout as one snapshot; a failed producer leaves none."""
    restic = repo.start_backup_stdin(filename, snapshot_tags)
    read_fd, write_fd = os.pipe()
    assert restic.stdin is not None
    counter = _Counter(os.fdopen(read_fd, "rb"), restic.stdin)
    counter.start()
    with os.fdopen(write_fd, "wb") as producer_out:
        result = runtime.exec(component, command, stdout=producer_out)
    counter.join()
    snapshot = Restic.finish_backup(restic)
    if result.returncode != 0 or counter.error:
        repo.forget(snapshot)  # a truncated dump must never look like a backup
        err = result.stderr.decode(errors="replace").strip().splitlines()
        raise BackupError(f"{component}: {' '.join(command[:2])} failed ({err[-1] if err else counter.error}); "
                          "no snapshot kept")
    return snapshot, counter.bytes


def run_backup(model: StackModel, runtime: Runtime, say: Progress, only: str | None = None) -> list[ItemResult]:
    specs = load_components()
    repo = open_repository(model, create=True)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: list[ItemResult] = []
    for item in plan(model, only):
        start = datetime.now(UTC)
        say(f"{item.key}: backing up")
        try:
            if item.kind == "state":
                data = json.dumps(StackState(model.name).all(), sort_keys=True).encode()
                snap = repo.backup_stdin(item.filename, _bytes_io(data), tags(model, item, run_id))
                result = ItemResult(item, True, snap, len(data))
            else:
                spec = specs[item.component]
                where, command = dump_command(item, spec)
                snap, size = stream_into_repository(repo, runtime, where, command, item.filename,
                                                    tags(model, item, run_id))
                result = ItemResult(item, True, snap, size)
                if item.kind == "database":
                    assert spec.database
                    facts = runtime.exec("postgres", [PG_TOOL, "facts-of-dump", spec.database])
                    if facts.returncode != 0:
                        repo.forget(snap)
                        raise BackupError(f"{item.key}: facts of the dump missing; no snapshot kept")
                    result.facts = json.loads(facts.stdout)
                    repo.backup_stdin(f"{item.component}.facts.json", _bytes_io(facts.stdout),
                                      tags(model, item, run_id, kind="facts") + schema_tag(runtime, spec.database))
        except (BackupError, ResticError) as exc:
            result = ItemResult(item, False, error=str(exc))
        result.seconds = (datetime.now(UTC) - start).total_seconds()
        say(f"{item.key}: {'ok ' + result.snapshot if result.ok else 'FAILED ' + result.error}")
        results.append(result)
    if all(r.ok for r in results):
        keep = model.backup.retention
        retention = ItemResult(Item("govcloud", "retention", ""), True)
        try:
            repo.unlock_stale()  # locks left by a killed run would block forget/prune forever
            repo.apply_retention(keep.daily, keep.weekly, keep.monthly)
        except ResticError as exc:
            retention.ok, retention.error = False, str(exc)
            say(f"retention: FAILED {exc}")
        results.append(retention)
    return results


def schema_tag(runtime: Runtime, database: str) -> list[str]:
    """``schema=<last migration applied>`` of the snapshot the dump was taken from (``infra.ops.schema``); none
    when the database has no migrations table (or the postgres image predates the command)."""
    from infra.ops import schema

    res = runtime.exec("postgres", [PG_TOOL, "schema-of-dump", database])
    return schema.tag_for(schema.parse(res.stdout) if res.returncode == 0 else None)


def latest(repo: Restic, model: StackModel) -> dict[str, Snapshot]:
    """Newest snapshot per ``component/kind`` for the stack."""
    newest: dict[str, Snapshot] = {}
    for snap in repo.snapshots([f"govcloud-stack={model.name}"]):
        newest[f"{snap.tag('component')}/{snap.tag('kind')}"] = snap
    return newest


def _bytes_io(data: bytes) -> IO[bytes]:
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 - the caller owns and closes it
    tmp.write(data)
    tmp.seek(0)
    return tmp
