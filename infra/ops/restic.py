"""restic (Debian's 0.14) as the backup engine: encrypted, deduplicated, with retention.

The repository password comes from the stack's state and reaches restic through its environment,
never the command line; cloud credentials likewise (``OS_*``) for the Swift backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any


class ResticError(RuntimeError):
    pass


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]

    def tag(self, key: str) -> str | None:
        prefix = f"{key}="
        return next((t[len(prefix):] for t in self.tags if t.startswith(prefix)), None)


class Restic:
    def __init__(self, repository: str, password: str, extra_env: dict[str, str] | None = None):
        if shutil.which("restic") is None:
            raise ResticError("restic is not installed: run scripts/bootstrap-host.sh")
        self.repository = repository
        self.env = {**os.environ, "RESTIC_REPOSITORY": repository, "RESTIC_PASSWORD": password,
                    "RESTIC_CACHE_DIR": str(Path.home() / ".cache" / "restic"), **(extra_env or {})}

    def _run(self, *args: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(["restic", "-q", *args],
                              env=self.env, stdin=stdin, stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise ResticError(f"restic {args[0]} ({self.repository}): {err[-1] if err else proc.returncode}")
        return proc

    def exists(self) -> bool:
        return self._run("cat", "config", check=False).returncode == 0

    def init_if_needed(self) -> bool:
        if self.exists():
            return False
        self._run("init")
        return True

    def backup_stdin(self, filename: str, source: IO[bytes], tags: list[str]) -> str:
        """Store a stream; returns the snapshot id."""
        args = ["backup", "--json", "--stdin", "--stdin-filename", filename]
        for tag in tags:
            args += ["--tag", tag]
        return _snapshot_id(self._run(*args, stdin=source).stdout, f"restic backup of {filename}")

    def start_backup_stdin(self, filename: str, tags: list[str]) -> subprocess.Popen[bytes]:
        """Start a backup reading its stdin (a pipe the caller feeds); finish with ``finish_backup``."""
        args = ["restic", "-q", "backup", "--json", "--stdin", "--stdin-filename", filename]
        for tag in tags:
            args += ["--tag", tag]
        return subprocess.Popen(args, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    @staticmethod
    def finish_backup(proc: subprocess.Popen[bytes]) -> str:
        proc.stdin = None  # the feeder closed it: that is restic's end of input
        out, err = proc.communicate()
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise ResticError(f"restic backup: {lines[-1] if lines else proc.returncode}")
        return _snapshot_id(out, "restic backup")

    def backup_paths(self, paths: list[Path], tags: list[str]) -> str:
        args = ["backup", "--json", *[str(p) for p in paths]]
        for tag in tags:
            args += ["--tag", tag]
        return _snapshot_id(self._run(*args).stdout, "restic backup")

    def snapshots(self, tags: list[str] | None = None) -> list[Snapshot]:
        args = ["snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(tags)]
        docs: list[dict[str, Any]] = json.loads(self._run(*args).stdout or b"[]") or []
        snaps = [
            Snapshot(d["short_id"], datetime.fromisoformat(d["time"]), tuple(d.get("tags") or ()), tuple(d["paths"]))
            for d in docs
        ]
        return sorted(snaps, key=lambda s: s.time)

    def dump(self, snapshot: str, filename: str, out: IO[bytes]) -> None:
        self._run("dump", snapshot, filename, stdout=out)

    def measure(self, snapshot: str, filename: str) -> tuple[int, str]:
        """Stream a stored file through restic (which checks every blob) and return its size and sha256."""
        import hashlib

        h, size = hashlib.sha256(), 0
        proc = subprocess.Popen(["restic", "-q", "dump", snapshot, filename], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            size += len(chunk)
            h.update(chunk)
        err = proc.stderr.read() if proc.stderr else b""
        if proc.wait() != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise ResticError(f"restic dump {snapshot} {filename}: {lines[-1] if lines else proc.returncode}")
        return size, h.hexdigest()

    def read(self, snapshot: str, filename: str) -> bytes:
        return self._run("dump", snapshot, filename).stdout

    def forget(self, snapshot: str) -> None:
        self._run("forget", snapshot)

    def unlock_stale(self) -> None:
        """Remove locks whose process is gone (restic's own check); live locks are kept."""
        self._run("unlock")

    def apply_retention(self, daily: int, weekly: int, monthly: int) -> None:
        self._run("forget", "--group-by", "tags", "--keep-daily", str(daily), "--keep-weekly", str(weekly),
                  "--keep-monthly", str(monthly), "--keep-last", "1", "--prune")

    def check(self) -> None:
        self._run("check")


def _snapshot_id(stdout: bytes, what: str) -> str:
    """The new snapshot's short id from ``restic backup --json``: its summary line (other lines are progress)."""
    for line in stdout.decode().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("message_type") == "summary":
            return str(doc["snapshot_id"])[:8]
    raise ResticError(f"{what}: no summary in output")
