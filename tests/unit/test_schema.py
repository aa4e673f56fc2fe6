"""Schema versions across backups (infra.ops.schema), without a database: the refusal and the forward report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import IO

import pytest

from infra.ops import schema
from infra.ops.backup import BackupError
from infra.ops.restic import Snapshot
from infra.runtime.base import ExecResult

CODE = schema.code_migrations("payment")


def facts(at: str | None) -> Snapshot:
    return Snapshot("f00dfeed", datetime.now(UTC), ("kind=facts", *([f"schema={at}"] if at else [])), ("/x",))


class Postgres:
    def __init__(self, answer: bytes, code: int = 0):
        self.answer, self.code, self.calls = answer, code, []  # type: ignore[var-annotated]

    def exec(self, component: str, command: list[str], stdin: IO[bytes] | None = None,
             stdout: IO[bytes] | None = None) -> ExecResult:
        self.calls.append((component, command))
        return ExecResult(self.code, self.answer, b"")


def test_the_code_knows_its_migrations_in_order() -> None:
    assert CODE[:2] == ["001_payment.sql", "002_notifications.sql"] and sorted(CODE) == CODE
    assert schema.code_migrations("ca") == [] and schema.code_migrations("nats") == []


def test_parse_and_tag() -> None:
    assert schema.parse(b'["001_a.sql", "002_b.sql"]\n') == ["001_a.sql", "002_b.sql"]
    assert schema.parse(b"null\n") is None and schema.parse(b"") is None and schema.parse(b"garbage") is None
    assert schema.tag_for(["001_a.sql", "002_b.sql"]) == ["schema=002_b.sql"]
    assert schema.tag_for([]) == [] and schema.tag_for(None) == []


def test_a_backup_newer_than_the_code_is_refused_in_one_line() -> None:
    snap = Snapshot("abc12345", datetime.now(UTC), (), ())
    with pytest.raises(BackupError) as err:
        schema.refuse_newer("payment", snap, facts("999_later.sql"))
    assert str(err.value) == (f"payment: snapshot abc12345 is at schema 999_later.sql, newer than this code knows "
                              f"(its migrations end at {CODE[-1]}); restore refused, nothing changed")
    for fine in (CODE[0], CODE[-1], None):  # older, the same, not recorded (taken before versions were recorded)
        schema.refuse_newer("payment", snap, facts(fine))
    schema.refuse_newer("ca", snap, facts(None))


def test_forward_reports_what_the_component_applied_on_start() -> None:
    pg = Postgres(("[" + ", ".join(f'"{m}"' for m in CODE) + "]").encode())
    ok, words = schema.forward(pg, "payment", "payment", facts(CODE[0]))  # type: ignore[arg-type]
    assert ok and words == f"schema {CODE[0]} migrated forward on start to {CODE[-1]} ({len(CODE) - 1} migration(s))"
    assert pg.calls == [("postgres", ["/opt/govcloud/postgres/pg-backup.sh", "schema", "payment"])]
    assert schema.forward(pg, "payment", "payment", facts(CODE[-1])) == (True, f"schema {CODE[-1]}")  # type: ignore[arg-type]
    assert schema.forward(pg, "payment", "payment", facts(None)) == (  # type: ignore[arg-type]
        True, f"schema at {CODE[-1]} (the backup's was not recorded)")
    behind = Postgres(("[" + ", ".join(f'"{m}"' for m in CODE[:-1]) + "]").encode())
    assert schema.forward(behind, "payment", "payment", facts(CODE[0])) == (  # type: ignore[arg-type]
        False, f"schema {CODE[0]} not brought forward on start: {CODE[-1]} not applied")
    assert schema.forward(Postgres(b"", 1), "payment", "payment", facts(CODE[0])) == (True, "")  # type: ignore[arg-type]
    assert schema.forward(pg, "ca", "ca", facts(None)) == (True, "")  # type: ignore[arg-type]
