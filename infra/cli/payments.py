"""``govcloud payments``: the payment gateway's operations on a stack.

``payments reconcile`` asks the stack's payment component (its admin API, with the admin token from the stack's
state, never printed) to match the ledger's payments of a day against the national switch's settlement file — the
switch's own (fetched and its signature checked by the gateway) or a CSV given with ``--settlement`` — and shows
every line: matched, or the mismatch. Exit 0 when everything matches, 1 when there are mismatches, 2 on an error
(one line naming what to fix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.table import Table

from infra.cli.common import JsonOpt, StackOpt, console, out
from infra.model import StackError, load_stack
from infra.runtime.select import runtime_for
from infra.state import StackState, StateError

payments = typer.Typer(no_args_is_help=True, add_completion=False, help="Payment gateway operations.")
MAX_CSV_BYTES = 64 * 2**20  # the gateway's limit for an uploaded file
TIMEOUT = httpx.Timeout(300.0, connect=5.0)  # a busy day's file takes a while to match


class PaymentsError(Exception):
    """A problem the operator fixes; its text is one line."""


def parse_day(text: str | None, today: date | None = None) -> date:
    """``--date``: YYYY-MM-DD, default yesterday (UTC) - the last complete settlement day."""
    if text is None:
        return (today or datetime.now(UTC).date()) - timedelta(days=1)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PaymentsError(f"--date: {text!r} is not a date; give it as YYYY-MM-DD (e.g. 2026-12-06)") from None
    if len(text) != 10 or not 2000 <= day.year <= 2200:
        raise PaymentsError(f"--date: {text!r} is not a date between 2000-01-01 and 2200-12-31 (YYYY-MM-DD)")
    return day


def read_settlement(path: Path) -> str:
    """The settlement file's text; unreadable, empty, oversized or non-UTF-8 files are refused here (the gateway
    checks the content and names the first bad line)."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise PaymentsError(f"--settlement: {path} is a directory; give the settlement CSV file")
        if size > MAX_CSV_BYTES:
            raise PaymentsError(f"--settlement: {path} is {size} bytes, over the {MAX_CSV_BYTES} the gateway accepts;"
                                " split it or reconcile from the switch (without --settlement)")
        data = path.read_bytes()
    except OSError as exc:
        raise PaymentsError(f"--settlement: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PaymentsError(f"--settlement: {path} is not UTF-8 text (byte {exc.start}); export the CSV as UTF-8") \
            from None
    if not text.strip():
        raise PaymentsError(f"--settlement: {path} is empty; expected a header line switch_ref,rtp_id,amount,...")
    return text


@dataclass
class Target:
    stack: str
    url: str      # the payment component's base URL
    token: str    # the stack's payment admin token (never printed)


def target(stack: str) -> Target:
    model = load_stack(stack)
    if not model.enabled("payment"):
        raise PaymentsError(f"stack {stack} has no payment component (components.payment.enabled is false)")
    token = StackState(model.name).get("payment", "admin-token")
    return Target(stack, runtime_for(model).endpoint("payment", "http").rstrip("/"), token)


def reconcile_on(t: Target, day: date, settlement: str | None, settlement_name: str = "",
                 client: httpx.Client | None = None) -> dict[str, Any]:
    """POST the reconciliation to the stack's gateway; its report, or a one-line PaymentsError."""
    body: dict[str, Any] = {"date": day.isoformat()}
    if settlement is not None:
        body["settlement_csv"] = settlement
    http = client or httpx.Client(timeout=TIMEOUT)
    try:
        resp = http.post(f"{t.url}/api/reconciliations", json=body, headers={"authorization": f"Bearer {t.token}"})
    except httpx.ConnectError:
        raise PaymentsError(f"payment is not running in stack {t.stack}: nothing answers at {t.url} "
                            f"(see `govcloud status -s {t.stack}`, start it with `govcloud up -s {t.stack}`)") from None
    except httpx.TimeoutException:
        raise PaymentsError(f"payment in stack {t.stack} did not answer within {TIMEOUT.read:g} s at {t.url}") \
            from None
    except httpx.HTTPError as exc:
        raise PaymentsError(f"payment in stack {t.stack} at {t.url}: {type(exc).__name__}") from None
    finally:
        if client is None:
            http.close()
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if resp.status_code == 201 and isinstance(doc, dict) and "mismatches" in doc:
        return doc
    detail = " ".join(f"{doc.get('title', '')}: {doc.get('detail', '')}".split()) if isinstance(doc, dict) else \
        " ".join(resp.text[:200].split())
    if resp.status_code == 401:
        raise PaymentsError(f"payment in stack {t.stack} refused the stack's admin token (the stack's state and the "
                            f"running component disagree; `govcloud up -s {t.stack}` pushes the secrets again)")
    if resp.status_code == 422 and settlement is not None and "settlement" in detail:
        raise PaymentsError(f"--settlement: {settlement_name}: {detail.split(': ', 1)[-1]}")
    raise PaymentsError(f"payment in stack {t.stack} could not reconcile {day.isoformat()}: "
                        f"HTTP {resp.status_code} {detail}"[:400])


def lines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every line of the report, in settlement-file order (ledger-only lines last)."""
    rows = [{"result": "matched", "kind": "matched", "order_id": m["order_id"], "switch_ref": m["switch_ref"],
             "ledger_amount": m["amount"], "switch_amount": m["amount"], "line": m.get("line"), "detail": ""}
            for m in report.get("matched_lines", [])]
    rows += [{"result": "mismatch", "kind": m["kind"], "order_id": m["order_id"], "switch_ref": m["switch_ref"],
              "ledger_amount": m.get("ledger_amount"), "switch_amount": m.get("switch_amount"), "line": m.get("line"),
              "detail": f"order {m['order_status']}" if m.get("order_status") else ""}
             for m in report["mismatches"]]
    return sorted(rows, key=lambda r: (r["line"] is None, r["line"] or 0, r["order_id"]))


def summary(stack: str, report: dict[str, Any]) -> str:
    n = len(report["mismatches"])
    verdict = "[green]all matched[/]" if n == 0 else f"[red]{n} mismatch{'es' if n != 1 else ''}[/]"
    source = "an uploaded settlement file" if report.get("source") == "uploaded" else "the switch's settlement file"
    return (f"reconciliation {report.get('id')} of {report['date']} in {stack} against {source} "
            f"({report.get('settlement_rows', '?')} lines): {report['matched']} matched, {verdict}")


def table(stack: str, report: dict[str, Any], only_mismatches: bool = False) -> Table:
    t = Table(title=f"reconciliation {report.get('id')} of {report['date']} in {stack}")
    for col, just in (("line", "right"), ("result", "left"), ("order", "left"), ("switch ref", "left"),
                      ("ledger", "right"), ("switch", "right"), ("detail", "left")):
        t.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in lines(report):
        if only_mismatches and r["result"] == "matched":
            continue
        result = "[green]matched[/]" if r["result"] == "matched" else f"[red]{r['kind']}[/]"
        t.add_row("" if r["line"] is None else str(r["line"]), result, r["order_id"], r["switch_ref"] or "",
                  "-" if r["ledger_amount"] is None else str(r["ledger_amount"]),
                  "-" if r["switch_amount"] is None else str(r["switch_amount"]), r["detail"])
    return t


@payments.command()
def reconcile(stack: str = StackOpt,
              day: str | None = typer.Option(None, "--date", metavar="YYYY-MM-DD",
                                             help="the settlement day (default: yesterday, UTC)"),
              settlement: Path | None = typer.Option(None, "--settlement", metavar="FILE.csv",
                                                     help="match this settlement CSV instead of the switch's file"),
              only_mismatches: bool = typer.Option(False, "--mismatches-only", help="list only the mismatches"),
              as_json: bool = JsonOpt) -> None:
    """Match a day's payments in the ledger against the switch's settlement file; exit 1 on any mismatch."""
    try:
        when = parse_day(day)
        text = read_settlement(settlement) if settlement is not None else None
        report = reconcile_on(target(stack), when, text, str(settlement or ""))
    except (PaymentsError, StackError, StateError) as exc:
        for line in str(exc).splitlines():
            console.print(f"[red]error[/red]: {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(json.dumps(report))
    else:
        out.print(table(stack, report, only_mismatches))
        out.print(summary(stack, report), soft_wrap=True, highlight=False)
    raise typer.Exit(1 if report["mismatches"] else 0)


def register(app: typer.Typer) -> None:
    app.add_typer(payments, name="payments")
