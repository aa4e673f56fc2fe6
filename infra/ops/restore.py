"""``govcloud restore`` and ``govcloud drill --beside``: put a backup back, and prove that backups restore.

A restore never loses what is there now: it first takes a safety backup of the current data, stops
the component, restores, verifies the restored facts against the snapshot's facts, and on any failure
puts the safety backup back. The data comes back at the schema it was dumped at and the component migrates it
forward when it starts again; a backup at a schema newer than the code is refused first (``infra.ops.schema``). A drill ``--beside`` restores into a scratch database next to the live one and
verifies the same facts, measuring RTO (restore + verify time) and RPO (age of the snapshot): quick, but it
proves neither the state (secrets) nor that the platform starts on its backups; ``infra.ops.drill`` does both.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from infra.contract import ComponentSpec, load_components
from infra.model import StackModel
from infra.ops import schema
from infra.ops.backup import PG_TOOL, BackupError, latest, plan, run_backup
from infra.ops.repository import open_repository
from infra.ops.restic import Restic, ResticError, Snapshot
from infra.runtime.base import Progress, Runtime


@dataclass
class DrillResult:
    component: str
    kind: str
    ok: bool
    snapshot: str = ""
    rto_s: float = 0.0
    rpo_s: float = 0.0
    tables: int = 0
    rows: int = 0
    detail: str = ""
    schema: str = ""  # the restored schema's version, and whether the component brought it forward on start


def _pipe_snapshot(repo: Restic, snap: Snapshot, filename: str, runtime: Runtime, component: str,
                   command: list[str]) -> tuple[int, bytes, bytes]:
    """``restic dump`` of a snapshot streamed into a command inside a component."""
    read_fd, write_fd = os.pipe()
    error: list[str] = []

    def feed() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                repo.dump(snap.id, filename, out)
        except (ResticError, OSError) as exc:
            error.append(str(exc))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with os.fdopen(read_fd, "rb") as src:
        result = runtime.exec(component, command, stdin=src, stdout=None)
    feeder.join()
    if result.returncode != 0:  # the consumer's own error explains a broken pipe on restic's side
        return result.returncode, result.stdout, result.stderr
    if error:
        return 1, b"", error[0].encode()
    return result.returncode, result.stdout, result.stderr


def _component_verify(runtime: Runtime, spec: ComponentSpec, database: str) -> str:
    """The component's own verification (contract ``backup.verify``) run against the restored copy:
    its PG* environment points it at the scratch database, which its role owns. Empty when it passes."""
    if not spec.backup:
        return ""
    result = runtime.exec(spec.name, ["env", f"PGDATABASE={database}", *spec.backup.verify])
    if result.returncode == 0:
        return ""
    lines = (result.stdout + result.stderr).decode(errors="replace").strip().splitlines()
    return f"{' '.join(spec.backup.verify)} failed on the restored copy: {lines[-1][:300] if lines else result.returncode}"


def compare_facts(expected: dict[str, dict[str, object]], actual: dict[str, dict[str, object]]) -> str:
    """Empty when equal; otherwise the first differences, in words."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        e, a = expected.get(table), actual.get(table)
        if e != a:
            problems.append(f"{table}: expected {e}, restored {a}")
    return "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")


def _snapshots_for(repo: Restic, model: StackModel, component: str, kind: str,
                   snapshot: str | None = None) -> tuple[Snapshot, Snapshot | None]:
    if snapshot:
        snap = next((s for s in repo.snapshots([f"govcloud-stack={model.name}", f"component={component}",
                                                f"kind={kind}"]) if s.id.startswith(snapshot)), None)
        if snap is None:
            raise BackupError(f"--snapshot {snapshot}: not a {kind} snapshot of {component} in stack {model.name}")
    else:
        snap = latest(repo, model).get(f"{component}/{kind}")
    if snap is None:
        raise BackupError(f"{component}: no {kind} backup in {repo.repository}; run `govcloud backup -s {model.name}`")
    facts = None
    if kind == "database":
        run = snap.tag("run")
        same_run = [s for s in repo.snapshots([f"govcloud-stack={model.name}", f"component={component}",
                                              "kind=facts"]) if s.tag("run") == run]
        facts = same_run[-1] if same_run else None
        if facts is None:
            raise BackupError(f"{component}: snapshot {snap.id} has no facts to verify against; take a new backup")
    return snap, facts


def drill(model: StackModel, runtime: Runtime, say: Progress, only: str | None = None) -> list[DrillResult]:
    repo = open_repository(model)
    specs = load_components()
    results: list[DrillResult] = []
    for item in plan(model, only):
        if item.kind == "state":
            continue
        spec = specs[item.component]
        start = time.monotonic()
        try:
            snap, facts_snap = _snapshots_for(repo, model, item.component, item.kind)
            if item.kind == "database":
                schema.refuse_newer(item.component, snap, facts_snap)
            rpo = (datetime.now(UTC) - snap.time.astimezone(UTC)).total_seconds()
            say(f"{item.key}: restoring {snap.id} into a scratch copy")
            if item.kind == "database":
                assert spec.database and facts_snap is not None
                scratch = f"{spec.database}_drill"
                code, _, err = _pipe_snapshot(repo, snap, item.filename, runtime, "postgres",
                                              [PG_TOOL, "restore", spec.database, scratch])
                if code != 0:
                    raise BackupError(f"restore into {scratch} failed: {err.decode(errors='replace').strip()[-300:]}")
                got = runtime.exec("postgres", [PG_TOOL, "facts", scratch])
                semantic = _component_verify(runtime, spec, scratch)  # e.g. the ledger balances, the CA signs
                runtime.exec("postgres", [PG_TOOL, "drop", scratch])
                expected = json.loads(repo.read(facts_snap.id, f"{item.component}.facts.json"))
                actual = json.loads(got.stdout)
                diff = compare_facts(expected, actual) or semantic
                rows = sum(int(str(v["rows"])) for v in actual.values())
                verified = "facts match" + (f"; {' '.join(spec.backup.verify[-2:])} ok" if spec.backup else "")
                results.append(DrillResult(item.component, item.kind, not diff, snap.id,
                                           time.monotonic() - start, rpo, len(actual), rows, diff or verified))
            else:
                # a hook's restore writes into the live component, so a drill proves the stream itself:
                # restic decrypts and checks every blob of it; the component's verify runs after a real restore
                size, digest = repo.measure(snap.id, item.filename)
                results.append(DrillResult(item.component, item.kind, size > 0, snap.id, time.monotonic() - start,
                                           rpo, detail=f"stream intact, {size} bytes, sha256 {digest[:12]}"
                                           if size else "empty stream"))
        except (BackupError, ResticError) as exc:
            results.append(DrillResult(item.component, item.kind, False, detail=str(exc),
                                       rto_s=time.monotonic() - start))
        r = results[-1]
        say(f"{item.key}: {'ok' if r.ok else 'FAILED'} {r.detail} (RTO {r.rto_s:.1f}s)")
    return results


def restore(model: StackModel, runtime: Runtime, component: str, say: Progress,
            snapshot: str | None = None) -> DrillResult:
    """Restore the latest backup of a component's database in place, safely (see module docstring)."""
    spec = load_components().get(component)
    if spec is None or not spec.database:
        raise BackupError(f"--component {component}: only components with a database restore in place")
    repo = open_repository(model)
    snap, facts_snap = _snapshots_for(repo, model, component, "database", snapshot)
    assert facts_snap is not None
    schema.refuse_newer(component, snap, facts_snap)  # before the safety backup: a refusal changes nothing
    start = time.monotonic()
    say(f"{component}: safety backup of the current data first")
    safety = run_backup(model, runtime, say, only=component)
    if not all(r.ok for r in safety):
        raise BackupError(f"{component}: safety backup failed, nothing changed: {safety[0].error}")
    safety_snap = next(r for r in safety if r.item.kind == "database")
    runtime.scale(component, running=False)
    try:
        say(f"{component}: restoring {snap.id} ({snap.time:%Y-%m-%d %H:%M:%S} UTC)")
        outcome = _restore_verified(repo, runtime, snap, facts_snap, component, spec.database)
        if outcome:
            say(f"{component}: restore did not verify ({outcome}); putting the safety backup back")
            safety_facts = json.dumps(safety_snap.facts)
            _restore_verified(repo, runtime, _find(repo, safety_snap.snapshot), None, component, spec.database,
                              expected_facts=safety_facts)
            raise BackupError(f"{component}: restore failed and was rolled back: {outcome}")
    finally:
        runtime.scale(component, running=True)  # it migrates on start: the restored schema comes forward
    forward_ok, words = schema.forward(runtime, component, spec.database, facts_snap)
    if not forward_ok:
        raise BackupError(f"{component}: restored and verified, but {words}")
    rpo = (datetime.now(UTC) - snap.time.astimezone(UTC)).total_seconds()
    return DrillResult(component, "database", True, snap.id, time.monotonic() - start, rpo, detail="facts match",
                       schema=words)


def _find(repo: Restic, snapshot_id: str) -> Snapshot:
    return next(s for s in repo.snapshots() if s.id == snapshot_id)


def _restore_verified(repo: Restic, runtime: Runtime, snap: Snapshot, facts_snap: Snapshot | None, component: str,
                      database: str, expected_facts: str | None = None) -> str:
    code, _, err = _pipe_snapshot(repo, snap, f"{component}.pgdump", runtime, "postgres",
                                  [PG_TOOL, "restore", database])
    if code != 0:
        return err.decode(errors="replace").strip()[-300:]
    expected = json.loads(expected_facts if expected_facts is not None
                          else repo.read(facts_snap.id, f"{component}.facts.json"))  # type: ignore[union-attr]
    actual = json.loads(runtime.exec("postgres", [PG_TOOL, "facts", database]).stdout)
    return compare_facts(expected, actual)
