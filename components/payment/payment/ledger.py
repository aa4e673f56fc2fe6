"""Double-entry ledger over PostgreSQL: integer minor units, balanced transactions, no-overdraft accounts.

Two-phase payment postings (amount > 0 debits, amount < 0 credits):

* reserve: Dr ``switch:pending`` / Cr ``order:<id>``            (the order's amount is earmarked)
* commit:  Dr ``order:<id>`` / Cr ``payee:<payee>`` and Dr ``switch:receivable`` / Cr ``switch:pending``
* abort:   Dr ``order:<id>`` / Cr ``switch:pending``

``order:<id>`` and ``payee:*`` are credit-normal no-overdraft accounts, so committing or aborting twice is refused by
the database (the order account would go positive). The shared ``switch:*`` accounts keep no balance row (their
balance is the sum of their entries), so concurrent orders never queue on one hot row.
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


async def ensure_account(conn: psycopg.AsyncConnection[Any], account: str, normal: str = "credit",
                         no_overdraft: bool = True) -> None:
    await conn.execute("INSERT INTO accounts (id, normal, no_overdraft) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                       (account, normal, no_overdraft))


async def post(conn: psycopg.AsyncConnection[Any], order_id: str | None, kind: str, legs: list[tuple[str, int]],
               now: datetime) -> int:
    """Write one balanced ledger transaction inside the caller's database transaction."""
    if not legs or sum(a for _, a in legs) != 0:
        raise LedgerError(f"{kind}: legs do not balance: {legs}")
    if any(isinstance(a, bool) or not isinstance(a, int) or a == 0 for _, a in legs):
        raise LedgerError(f"{kind}: amounts must be non-zero integers: {legs}")
    cur = await conn.execute("INSERT INTO ledger_tx (order_id, kind, created_at) VALUES (%s, %s, %s) RETURNING id",
                             (order_id, kind, now))
    row = await cur.fetchone()
    assert row is not None
    tx_id = int(row[0])
    async with conn.cursor() as c:
        await c.executemany("INSERT INTO entries (tx_id, account, amount) VALUES (%s, %s, %s)",
                            [(tx_id, acc, amt) for acc, amt in legs])
    return tx_id


async def reserve(conn: psycopg.AsyncConnection[Any], order_id: str, amount: int, now: datetime) -> int:
    await ensure_account(conn, order_account(order_id))
    return await post(conn, order_id, "reserve", [(PENDING, amount), (order_account(order_id), -amount)], now)


async def commit(conn: psycopg.AsyncConnection[Any], order_id: str, payee: str, amount: int, now: datetime) -> int:
    await ensure_account(conn, payee_account(payee))
    return await post(conn, order_id, "commit", [(order_account(order_id), amount), (payee_account(payee), -amount),
                                                  (RECEIVABLE, amount), (PENDING, -amount)], now)


async def abort(conn: psycopg.AsyncConnection[Any], order_id: str, amount: int, now: datetime) -> int:
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
