"""Per-stack local state: generated secrets (0600, written atomically) that must survive every failure.

Secrets are generated once per stack and never regenerated: losing them would lock components out of
their own databases. A damaged file stops the operation instead of being overwritten.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import tempfile
from pathlib import Path

from infra.model import state_root


class StateError(RuntimeError):
    pass


class StackState:
    def __init__(self, stack: str, root: Path | None = None):
        self.stack = stack
        self.dir = (root or state_root()) / stack
        self.secrets_file = self.dir / "secrets.json"

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.secrets_file.exists():
            return {}
        try:
            data = json.loads(self.secrets_file.read_text())
        except (OSError, ValueError) as exc:
            raise StateError(
                f"{self.secrets_file}: unreadable ({exc}); restore it from the last `govcloud backup` (state snapshot) "
                "before continuing — it is never overwritten automatically"
            ) from None
        if not isinstance(data, dict):
            raise StateError(f"{self.secrets_file}: expected a JSON object; restore it from backup")
        return data

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".secrets-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o600)
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.secrets_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def ensure(self, wanted: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        """Generate any missing secret in ``{group: [key, ...]}``; existing values are kept as they are."""
        data = self._read()
        changed = False
        for group, keys in wanted.items():
            bucket = data.setdefault(group, {})
            for key in keys:
                if key not in bucket:
                    bucket[key] = _secrets.token_urlsafe(32)
                    changed = True
        if changed:
            self._write(data)
        return data

    def all(self) -> dict[str, dict[str, str]]:
        return self._read()

    def restore(self, data: dict[str, dict[str, str]]) -> None:
        """Seed a new stack's state from a backup (``govcloud/state``); refuses to replace existing state."""
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise StateError(f"stack {self.stack}: the state to restore is not a JSON object of groups")
        if self._read():
            raise StateError(f"{self.secrets_file}: already holds secrets; a restore never replaces them")
        self._write(data)

    def get(self, group: str, key: str) -> str:
        try:
            return self._read()[group][key]
        except KeyError:
            raise StateError(f"stack {self.stack}: no secret {group}/{key}; run `govcloud up -s {self.stack}`") from None

    def remove(self) -> None:
        """Forget this stack's state (only after its workloads and volumes are gone)."""
        if self.secrets_file.exists():
            self.secrets_file.unlink()
        if self.dir.exists() and not any(self.dir.iterdir()):
            self.dir.rmdir()
