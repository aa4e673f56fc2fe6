"""Run the playbooks through ansible-runner: progress per task, a per-host summary, failures named.

``ansible-playbook -i INVENTORY playbooks/site.yml`` does the same work; this wrapper adds what an
operator needs from the CLI: which task is running, ok/changed/failed per host, and for a failure
the host, the task and the module's message on one line.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.model.loader import REPO_ROOT

PLAYBOOKS = REPO_ROOT / "playbooks"
Say = Callable[[str], None]


@dataclass
class HostResult:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class Failure:
    host: str
    task: str
    message: str

    def line(self) -> str:
        return f"{self.host}: task '{self.task}' failed: {self.message}"


@dataclass
class RunResult:
    playbook: str
    status: str
    rc: int
    hosts: dict[str, HostResult] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())


def _message(res: Mapping[str, Any]) -> str:
    """The module's message, with the command's or validator's own stderr when there is one."""
    parts = [str(res.get(key) or "") for key in ("msg", "stderr", "module_stderr")]
    if not any(parts):
        parts = [str(res.get("stdout") or "no message")]
    text = ": ".join(dict.fromkeys(p for p in parts if p))
    return " ".join(text.split())[:400]


class _Events:
    def __init__(self, say: Say | None) -> None:
        self.say = say
        self.failures: list[Failure] = []

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start" and self.say:
            self.say(f"task: {data.get('task', '?')}")
        elif kind == "playbook_on_play_start" and self.say:
            self.say(f"play: {data.get('play', '?')}")
        elif kind in ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed"):
            if kind != "runner_item_on_failed" and data.get("ignore_errors"):
                return True
            res = data.get("res") or {}
            self.failures.append(Failure(str(data.get("host", "?")), str(data.get("task", "?")), _message(res)))
        return True


@contextmanager
def _path(path: str) -> Iterator[None]:
    """ansible-runner finds ansible-playbook on this process's PATH: the venv's bin first while it runs."""
    before = os.environ.get("PATH")
    os.environ["PATH"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


FACT_CACHE_SECONDS = 3600  # a host rebuilt in place (same name and address, another release) is seen within the hour


def fact_cache(inventory: Path) -> Path:
    """Where facts are kept beside the inventory (``gathering = smart`` then skips gathering on a re-run,
    for an hour). The folder is named after the inventory's content: a rebuilt inventory (a host replaced, an
    address changed) starts from fresh facts."""
    try:
        digest = hashlib.sha256(Path(inventory).read_bytes()).hexdigest()[:12]
    except OSError:
        digest = "unread"
    return Path(inventory).resolve().parent / ".facts" / digest


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    say: Say | None = None,
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    tags: str | None = None,
    skip_tags: str | None = None,
    check: bool = False,
    private_data_dir: Path | None = None,
    envvars: Mapping[str, str] | None = None,
    playbooks_dir: Path = PLAYBOOKS,
) -> RunResult:
    """Run ``playbooks/<playbook>`` against ``inventory``; never raises for a failed task."""
    import ansible_runner

    events = _Events(say)
    cmdline = " ".join(["--check"] * check + ["--diff"] * check)
    bindir = Path(sys.executable).parent  # the venv's ansible-playbook, even when the venv is not activated
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(playbooks_dir / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(playbooks_dir / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": str(FACT_CACHE_SECONDS),
        **(envvars or {}),
    }
    with tempfile.TemporaryDirectory(prefix="govcloud-runner-") as tmp, _path(env["PATH"]):
        pdd = private_data_dir or Path(tmp)
        pdd.mkdir(parents=True, exist_ok=True)
        runner = ansible_runner.run(
            private_data_dir=str(pdd),
            project_dir=str(playbooks_dir),
            playbook=playbook,
            inventory=str(inventory),
            extravars=dict(extravars or {}),
            limit=limit,
            tags=tags,
            skip_tags=skip_tags,
            cmdline=cmdline or None,
            envvars=env,
            fact_cache=str(fact_cache(inventory)),  # absolute: ansible-runner would keep it in this run's artifacts
            event_handler=events,
            quiet=True,
            suppress_env_files=True,
            json_mode=False,
        )
        stats: dict[str, dict[str, int]] = runner.stats or {}
        hosts: dict[str, HostResult] = {}
        for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                          ("skipped", "skipped"), ("processed", None)):
            for host, count in (stats.get(key) or {}).items():
                result = hosts.setdefault(host, HostResult(host))
                if attr:
                    setattr(result, attr, int(count))
        rc = int(runner.rc if runner.rc is not None else 1)
        failures = events.failures
        if rc != 0 and not failures:
            tail = (runner.stdout.read().strip().splitlines() or ["no output"]) if runner.stdout else ["no output"]
            failures = [Failure("(all)", "(playbook)", " ".join(tail[-3:])[:300])]
        return RunResult(playbook, str(runner.status), rc, dict(sorted(hosts.items())), failures)


def default_envvars() -> dict[str, str]:
    """SSH settings for long runs through the bastion (ControlPersist), from the environment if set."""
    return {k: v for k, v in os.environ.items() if k.startswith("ANSIBLE_") and k != "ANSIBLE_CONFIG"}
