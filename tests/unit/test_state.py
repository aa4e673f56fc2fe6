"""Local state keeps generated secrets safe: never regenerated, never overwritten when damaged."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.state import StackState, StateError


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    state = StackState("s1", root=tmp_path)
    first = state.ensure({"portal": ["db-password"]})
    again = state.ensure({"portal": ["db-password", "admin-token"]})
    assert again["portal"]["db-password"] == first["portal"]["db-password"]
    assert len(again["portal"]["admin-token"]) >= 40
    assert stat.S_IMODE(state.secrets_file.stat().st_mode) == 0o600


def test_damaged_state_is_never_overwritten(tmp_path: Path) -> None:
    state = StackState("s2", root=tmp_path)
    state.ensure({"a": ["k"]})
    state.secrets_file.write_text("{broken")
    with pytest.raises(StateError, match="restore it from the last `govcloud backup`"):
        state.ensure({"a": ["k", "j"]})
    assert state.secrets_file.read_text() == "{broken"
