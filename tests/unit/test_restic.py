"""restic's JSON output: the new snapshot's id comes from its summary line, whatever else it prints."""

from __future__ import annotations

import json

import pytest

from infra.ops.restic import ResticError, _snapshot_id


def test_snapshot_id_from_the_summary_among_progress_and_noise() -> None:
    out = "\n".join([json.dumps({"message_type": "status", "percent_done": 0.5}), "not json", "[1, 2]",
                     json.dumps({"message_type": "summary", "snapshot_id": "0123456789abcdef"})]).encode()
    assert _snapshot_id(out, "restic backup") == "01234567"


def test_no_summary_names_what_was_backed_up() -> None:
    with pytest.raises(ResticError, match=r"^restic backup of x\.json: no summary in output$"):
        _snapshot_id(json.dumps({"message_type": "status"}).encode(), "restic backup of x.json")
