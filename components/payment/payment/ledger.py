"""Double-entry ledger over PostgreSQL: integer minor units, balanced transactions, no-overdraft accounts.

Two-phase payment postings (amount > 0 debits, amount < 0 credits):

* reserve: Dr ``switch:pending`` / Cr ``order:<id>``            (the order's amount is earmarked)
* commit:  Dr ``order:<id>`` / Cr ``payee:<payee>`` and Dr ``switch:receivable`` / Cr ``switch:pending``
* abort:   Dr ``order:<id>`` / Cr ``switch:pending``

``order:<id>`` is a credit-normal no-overdraft account with its balance kept in its row, so committing or aborting
twice is refused by the database itself (the order account would go positive). Shared accounts (``switch:*``,
``payee:*``) keep no balance row - their balance is the sum of their entries - so concurrent orders never queue on
one hot row; payee accounts are still no-overdraft, which ``check`` verifies over the entries (only credits reach
them today; a payout will take a per-payee lock and check the sum).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

PENDING = "switch:pending"
RECEIVABLE = "switch:receivable"


class LedgerError(Exception):
    pass


def order_account(order_id: str) -> str:
    return f"order:{order_id}"


def payee_account(payee: str) -> str:
    return f"payee:{payee}"


_POST = """
WITH opened AS (
    INSERT INTO accounts (id, normal, no_overdraft, tracked)
    SELECT * FROM unnest(%(ids)s::text[], %(normals)s::text[], %(nos)s::bool[], %(tracked)s::bool[])
    ON CONFLICT DO NOTHING
), tx AS (
    INSERT INTO ledger_tx (order_id, kind, created_at) VALUES (%(order)s, %(kind)s, %(now)s) RETURNING id
)
INSERT INTO entries (tx_id, account, amount)
SELECT tx.id, u.account, u.amount FROM tx, unnest(%(accounts)s::text[], %(amounts)s::bigint[]) AS u(account, amount)
"""


def checked(kind: str, legs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """``legs`` when they balance and every amount is a non-zero integer, else LedgerError (before any write)."""
    if not legs or sum(a for _, a in legs) != 0:
        raise LedgerError(f"{kind}: legs do not balance: {legs}")
    if any(isinstance(a, bool) or not isinstance(a, int) or a == 0 for _, a in legs):
        raise LedgerError(f"{kind}: amounts must be non-zero integers: {legs}")
    return legs


async def post(conn: psycopg.AsyncConnection[Any], order_id: str | None, kind: str, legs: list[tuple[str, int]],
               now: datetime, open_accounts: list[tuple[str, str, bool, bool]] | None = None) -> None:
    """Write one balanced ledger transaction inside the caller's database transaction, in one statement.

    ``open_accounts`` (id, normal, no_overdraft, tracked) are created first when they do not exist yet."""
    checked(kind, legs)
    cols = list(zip(*open_accounts, strict=True)) if open_accounts else [(), (), (), ()]
    await conn.execute(_POST, {
        "ids": list(cols[0]), "normals": list(cols[1]), "nos": list(cols[2]), "tracked": list(cols[3]),
        "order": order_id, "kind": kind, "now": now, "accounts": [a for a, _ in legs], "amounts": [m for _, m in legs]})


def reserve_legs(order_id: str, amount: int) -> tuple[list[tuple[str, int]], list[tuple[str, str, bool, bool]]]:
    """The reservation's legs and the order's account it opens (also posted by the gateway's create statement)."""
    acc = order_account(order_id)
    return checked("reserve", [(PENDING, amount), (acc, -amount)]), [(acc, "credit", True, True)]


async def reserve(conn: psycopg.AsyncConnection[Any], order_id: str, amount: int, now: datetime) -> None:
    legs, opened = reserve_legs(order_id, amount)
    return await post(conn, order_id, "reserve", legs, now, opened)


def commit_legs(order_id: str, payee: str, amount: int) -> tuple[list[tuple[str, int]],
                                                                  list[tuple[str, str, bool, bool]]]:
    """The commit's legs and the accounts it may open (also posted by the gateway's one-statement paid path)."""
    return (checked("commit", [(order_account(order_id), amount), (payee_account(payee), -amount),
                               (RECEIVABLE, amount), (PENDING, -amount)]),
            [(payee_account(payee), "credit", True, False)])


async def commit(conn: psycopg.AsyncConnection[Any], order_id: str, payee: str, amount: int, now: datetime) -> None:
    legs, opened = commit_legs(order_id, payee, amount)
    return await post(conn, order_id, "commit", legs, now, opened)


async def abort(conn: psycopg.AsyncConnection[Any], order_id: str, amount: int, now: datetime) -> None:
    return await post(conn, order_id, "abort", [(order_account(order_id), amount), (PENDING, -amount)], now)


async def check(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """The books' invariants: every transaction sums to zero, kept balances equal their entries, no overdraft."""
    unbalanced = [r[0] for r in await (await conn.execute(
        "SELECT tx_id FROM entries GROUP BY tx_id HAVING sum(amount) <> 0")).fetchall()]
    drift = [r[0] for r in await (await conn.execute(
        "SELECT a.id FROM accounts a LEFT JOIN (SELECT account, sum(amount) s FROM entries GROUP BY account) e"
        " ON e.account = a.id WHERE a.tracked AND a.balance <> coalesce(e.s, 0)")).fetchall()]
    overdrawn = [r[0] for r in await (await conn.execute(
        "SELECT a.id FROM accounts a LEFT JOIN (SELECT account, sum(amount) s FROM entries GROUP BY account) e"
        " ON e.account = a.id WHERE a.no_overdraft AND ((a.normal = 'debit' AND coalesce(e.s, 0) < 0)"
        " OR (a.normal = 'credit' AND coalesce(e.s, 0) > 0))")).fetchall()]
    total = (await (await conn.execute("SELECT coalesce(sum(amount), 0), count(DISTINCT tx_id) FROM entries"))
             .fetchone()) or (0, 0)
    return {"balanced": not (unbalanced or drift or overdrawn) and total[0] == 0, "transactions": int(total[1]),
            "unbalanced": unbalanced, "drift": drift, "overdrawn": overdrawn, "sum": int(total[0])}


async def balance(conn: psycopg.AsyncConnection[Any], account: str) -> int:
    row = await (await conn.execute("SELECT coalesce(sum(amount), 0) FROM entries WHERE account = %s",
                                    (account,))).fetchone()
    return int(row[0]) if row else 0
