"""The restore drill into a fresh throwaway stack (``govcloud drill``), and ``govcloud restore --into NEW``.

Why a fresh stack and not scratch databases beside the live data (``govcloud drill --beside``, kept as the quick
check): only a new stack proves the whole recovery path an operator would walk after losing the machine — the
stack's secrets come back from the ``govcloud/state`` snapshot (the CA keys, the ledger's signing and every token
are encrypted with or tied to them), an empty PostgreSQL takes every database back, and the components start on
the restored data, pass their own verification (the CA signs and answers OCSP for certificates issued before the
backup, the ledger balances, the bus log chain verifies) and the health layers including the citizen journey.
The live stack is only read (its restic repository); the drill stack has its own name, ports, pods, volumes and
podman secrets, and is torn down afterwards (also on failure or Ctrl-C) with a proof that nothing is left.

Steps and clock: RTO runs from the start (before the drill stack exists) until the drill stack is healthy and
verified; RPO is the age of the oldest snapshot restored. The drill stack is an ephemeral environment
(``infra.ops.envs``) with a short TTL, so ``govcloud env gc`` removes it if the drill itself is killed.

Addresses stored in data: the components take each other's URLs from their environment (the drill stack's),
except the bus registry, which stores its member systems' base URLs; the bus bootstrap rewrites them to the drill
stack's body systems before the bus is ready and payment (its only sender here) starts after it, but a stored
address that no bootstrap rewrites would make the drill call the live stack: keep addresses out of data.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.contract import load_components
from infra.manifests.workloads import stack_components
from infra.model import StackModel, load_stack
from infra.ops import envs, schema
from infra.ops.backup import PG_TOOL, BackupError, Item, latest, plan
from infra.ops.health import DOWN, Check, overall, run_health
from infra.ops.repository import open_existing
from infra.ops.restic import Restic, ResticError, Snapshot
from infra.ops.restore import DrillResult, _pipe_snapshot, compare_facts
from infra.runtime.base import Progress, Runtime
from infra.state import StackState, StateError

DRILL_TTL = "1h"


@dataclass
class Chosen:
    item: Item
    snap: Snapshot
    facts: Snapshot | None = None


@dataclass
class FreshReport:
    stack: str
    drill_stack: str
    started: str
    ok: bool = False
    rto_s: float = 0.0
    rpo_s: float = 0.0
    results: list[DrillResult] = field(default_factory=list)
    health: list[Check] = field(default_factory=list)
    health_status: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds since the start when each step ended
    error: str = ""
    kept: bool = False
    leftovers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["mode"] = "fresh"
        return doc


def choose(repo: Restic, model: StackModel, snapshot: str | None = None, only: str | None = None) -> list[Chosen]:
    """The snapshots to restore: the latest of every item (or ``only`` one component's), one of them replaced by
    ``snapshot``; the state snapshot always (the data is tied to its secrets). Refuses before anything exists."""
    newest = latest(repo, model)
    pinned: Snapshot | None = None
    if snapshot:
        pinned = next((s for s in repo.snapshots([f"govcloud-stack={model.name}"]) if s.id.startswith(snapshot)), None)
        if pinned is None:
            raise BackupError(f"--snapshot {snapshot}: no such snapshot of stack {model.name} "
                              f"(list them: restic -r {repo.repository} snapshots)")
        if pinned.tag("kind") not in ("database", "state"):
            raise BackupError(f"--snapshot {snapshot}: it is a {pinned.tag('kind')} snapshot of "
                              f"{pinned.tag('component')}; give a database or state snapshot")
        if only and pinned.tag("component") not in (only, "govcloud"):
            raise BackupError(f"--snapshot {snapshot} belongs to {pinned.tag('component')}, not --component {only}")
    items = [i for i in plan(model) if only is None or i.component in (only, "govcloud")]
    if only and not any(i.component == only for i in items):
        known = ", ".join(s.name for s in stack_components(model))
        raise BackupError(f"--component {only}: nothing to restore (components of {model.name}: {known})")
    chosen: list[Chosen] = []
    for item in items:
        snap = pinned if pinned is not None and pinned.tag("component") == item.component \
            and pinned.tag("kind") == item.kind else newest.get(item.key)
        if snap is None:
            raise BackupError(f"{item.key}: no backup in {repo.repository}; run `govcloud backup -s {model.name}`")
        facts = None
        if item.kind == "database":
            run = snap.tag("run")
            same_run = [s for s in repo.snapshots([f"govcloud-stack={model.name}", f"component={item.component}",
                                                  "kind=facts"]) if s.tag("run") == run]
            if not same_run:
                raise BackupError(f"{item.component}: snapshot {snap.id} has no facts to verify against; "
                                  "take a new backup")
            facts = same_run[-1]
            schema.refuse_newer(item.component, snap, facts)
        chosen.append(Chosen(item, snap, facts))
    return chosen


def _age_s(snap: Snapshot) -> float:
    return (datetime.now(UTC) - snap.time.astimezone(UTC)).total_seconds()


def _last_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


def _summary(stdout: bytes) -> str:
    """A verify hook's JSON answer in a few words (the hook prints one JSON document)."""
    try:
        doc = json.loads(_last_line(stdout) or "{}")
    except ValueError:
        return _last_line(stdout)[:120]
    if not isinstance(doc, dict):
        return str(doc)[:120]
    parts = []
    for key, value in doc.items():
        if key in ("checked_at",):
            continue
        if isinstance(value, dict | list):
            parts.append(f"{key}: {len(value)}")
        else:
            parts.append(f"{key}: {value}")
    return ", ".join(parts)[:200]


class _Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.start, 2)


def _restore_databases(repo: Restic, runtime: Runtime, chosen: list[Chosen], clock: _Clock, say: Progress,
                       results: dict[str, DrillResult]) -> None:
    """Every database from its snapshot into the new stack's PostgreSQL, checked against the snapshot's facts
    before any component starts on it (a component's bootstrap may legitimately change its data afterwards)."""
    specs = load_components()
    for c in chosen:
        if c.item.kind != "database":
            continue
        spec = specs[c.item.component]
        assert spec.database and c.facts is not None
        say(f"{c.item.key}: restoring {c.snap.id} ({c.snap.time.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)")
        r = results[c.item.key]
        code, _, err = _pipe_snapshot(repo, c.snap, c.item.filename, runtime, "postgres",
                                      [PG_TOOL, "restore", spec.database])
        if code != 0:
            r.detail = f"restore failed: {_last_line(err)}"
            r.rto_s = clock.now()
            continue
        got = runtime.exec("postgres", [PG_TOOL, "facts", spec.database])
        if got.returncode != 0:
            r.detail = f"facts of the restored database failed: {_last_line(got.stderr)}"
            continue
        expected = json.loads(repo.read(c.facts.id, f"{c.item.component}.facts.json"))
        actual = json.loads(got.stdout)
        r.tables, r.rows = len(actual), sum(int(str(v["rows"])) for v in actual.values())
        diff = compare_facts(expected, actual)
        r.ok, r.detail, r.rto_s = not diff, diff or "row counts and checksums equal the manifest", clock.now()
        say(f"{c.item.key}: {'facts match' if r.ok else 'FACTS DIFFER: ' + diff}")


def _verify_hooks(repo: Restic, runtime: Runtime, chosen: list[Chosen], clock: _Clock, say: Progress,
                  results: dict[str, DrillResult]) -> None:
    """Each restored database brought forward to its code's schema on start, each restored component's own
    verification on the running drill stack, and every hook stream intact."""
    specs = load_components()
    for c in chosen:
        spec = specs.get(c.item.component)
        r = results[c.item.key]
        if c.item.kind == "database" and spec is not None and spec.database and r.ok:
            r.ok, words = schema.forward(runtime, spec.name, spec.database, c.facts)  # the schema came forward
            r.detail += f"; {words}" if words else ""
        if c.item.kind == "database" and spec is not None and spec.backup and r.ok:
            say(f"{c.item.component}: {' '.join(spec.backup.verify)}")
            res = runtime.exec(spec.name, spec.backup.verify)
            if res.returncode != 0:
                r.ok = False
                r.detail += f"; {' '.join(spec.backup.verify[-2:])} FAILED: {_last_line(res.stdout + res.stderr)}"
            else:
                r.detail += f"; {' '.join(spec.backup.verify[-2:])} ok ({_summary(res.stdout)})"
            r.rto_s = clock.now()
        elif c.item.kind == "hook":
            # the database dump restored above holds the same tables; this proves the stream itself is whole
            try:
                size, digest = repo.measure(c.snap.id, c.item.filename)
                r.ok, r.detail = size > 0, f"stream intact, {size} bytes, sha256 {digest[:12]}" if size else "empty"
            except ResticError as exc:
                r.detail = str(exc)
            r.rto_s = clock.now()


def _health(model: StackModel, runtime: Runtime) -> list[Check]:
    """The drill stack's health layers: components, certificates, the citizen journey (when the stack has every
    component it needs). The backups layer is left out: a throwaway stack has no backups of its own by design."""
    return run_health(model, runtime, only={"components", "certificates", "journey"})


def restore_fresh(live: StackModel, name: str, say: Progress, snapshot: str | None = None, only: str | None = None,
                  ttl: str = DRILL_TTL, keep: bool = False, keep_failed: bool | None = None) -> FreshReport:
    """Restore the live stack's backups into a new stack ``name`` and verify it; torn down afterwards unless
    ``keep`` (a drill), or ``keep_failed`` when it failed (default: as ``keep``). The new stack holds nothing
    anyone stored, so tearing it down loses nothing."""
    if live.target != "local":
        raise BackupError(f"stack {live.name} is on {live.target}: the fresh-stack drill runs on the local target "
                          "for now; use `govcloud drill --beside` there")
    clock = _Clock()
    report = FreshReport(live.name, name, datetime.now(UTC).isoformat(timespec="seconds"), kept=keep)
    repo = open_existing(live)  # the live stack's repository, only read
    chosen = choose(repo, live, snapshot, only)
    report.rpo_s = round(max(_age_s(c.snap) for c in chosen), 1)
    results = {c.item.key: DrillResult(c.item.component, c.item.kind, False, c.snap.id, rpo_s=round(_age_s(c.snap), 1),
                                       detail="not run: an earlier step failed") for c in chosen}
    report.results = list(results.values())
    envs.create(name, live.name, ttl)  # its own port offset and TTL; refuses an existing name
    say(f"drill stack {name} from {live.name} (TTL {ttl})")
    try:
        from infra.runtime.local import LocalRuntime

        state = next(c for c in chosen if c.item.kind == "state")
        r = results[state.item.key]
        try:
            data = json.loads(repo.read(state.snap.id, state.item.filename))
            StackState(name).restore(data)
            r.ok, r.detail = True, f"{len(data)} secret groups restored into the drill stack's state"
        except (ResticError, ValueError, StateError) as exc:
            r.detail = f"state not restored: {exc}"
            raise BackupError(f"{name}: {r.detail}") from None
        finally:
            r.rto_s = report.phases["state restored"] = clock.now()
        model = load_stack(name)
        runtime = LocalRuntime(model)
        runtime.up(say, only={"postgres"})
        report.phases["postgres up"] = clock.now()
        _restore_databases(repo, runtime, chosen, clock, say, results)
        report.phases["databases restored and checked"] = clock.now()
        failed = [k for k, r in results.items() if k.endswith("/database") and not r.ok]
        if failed:
            raise BackupError(f"{', '.join(failed)} did not restore as backed up; no component started on it")
        runtime.up(say)  # the components start (and bootstrap) on the restored data
        report.phases["components up"] = clock.now()
        _verify_hooks(repo, runtime, chosen, clock, say, results)
        report.phases["verify hooks"] = clock.now()
        say("health layers of the drill stack")
        report.health = _health(model, runtime)
        report.health_status = overall(report.health)
        report.rto_s = report.phases["healthy"] = clock.now()
        report.ok = all(r.ok for r in report.results) and report.health_status != DOWN
    except Exception as exc:  # reported and torn down below; the exit code says it failed
        report.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.rto_s = clock.now()
        say(f"FAILED: {report.error}")
    finally:
        if not (keep if report.ok else (keep if keep_failed is None else keep_failed)):
            say(f"tearing down {name}")
            try:
                envs.destroy(name, say)
            except Exception as exc:  # reported with what is left; `govcloud env destroy NAME` finishes it
                report.error = "; ".join(e for e in (report.error, f"teardown of {name} failed: {exc}") if e)
            report.kept = False
            report.leftovers = envs.leftovers(name)
            report.phases["torn down"] = clock.now()
            report.ok = report.ok and not report.leftovers
        else:
            report.kept = True
    return report


def drill_name() -> str:
    return f"drill-{secrets.token_hex(3)}"
