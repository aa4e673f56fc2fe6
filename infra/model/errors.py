"""Stack-file errors: one line per problem (file, field path, what was expected, what was found)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class StackError(Exception):
    """A stack file that cannot be used; ``lines`` holds every problem, one line each."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _expected(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field (remove it or check its spelling)"
    if kind == "missing":
        return "required field is missing"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return str(err["msg"]).replace("Input should be", "expected")
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg.replace("Input should be", "expected")


def from_validation(source: str, exc: ValidationError) -> StackError:
    lines = []
    for err in exc.errors():
        where = _path(tuple(err["loc"]))
        got = err.get("input")
        tail = "" if err["type"] in ("missing",) or isinstance(got, dict) else f", got {got!r}"
        lines.append(f"{source}: {where}: {_expected(err)}{tail}")
    return StackError(lines)
