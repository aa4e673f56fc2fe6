"""Queries over the catalog and feedback (psycopg 3, async pool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from portal import search_index, text
from portal.models import TRANSITIONS

SUMMARY = "s.id, s.body_id, s.status, s.name_en, s.name_ar, s.category, s.channels, s.fee_syp, s.processing_time"
DETAIL = (SUMMARY + ", s.description_en, s.description_ar, s.life_events, s.fee_legal_basis_en, s.fee_legal_basis_ar, "
          "s.payment_channels, s.processing_hours, s.requirements, s.steps, s.contact, s.legal_resources, "
          "b.name_en AS body_name_en, b.name_ar AS body_name_ar")


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass
class Filters:
    q: str = ""
    body: str | None = None
    category: str | None = None
    channel: str | None = None
    life_event: str | None = None
    fee_min: int | None = None
    fee_max: int | None = None
    max_hours: int | None = None
    statuses: list[str] = field(default_factory=lambda: ["published"])


def _where(f: Filters) -> tuple[list[str], dict[str, Any]]:
    where = ["s.status = ANY(%(statuses)s)"]
    args: dict[str, Any] = {"statuses": f.statuses}
    for column, value in (("body_id", f.body), ("category", f.category)):
        if value:
            where.append(f"s.{column} = %({column})s")
            args[column] = value
    if f.channel:
        where.append("s.channels @> ARRAY[%(channel)s]")
        args["channel"] = f.channel
    if f.life_event:
        where.append("s.life_events @> ARRAY[%(life_event)s]")
        args["life_event"] = f.life_event
    if f.fee_min is not None:
        where.append("s.fee_syp >= %(fee_min)s")
        args["fee_min"] = f.fee_min
    if f.fee_max is not None:
        where.append("s.fee_syp <= %(fee_max)s")
        args["fee_max"] = f.fee_max
    if f.max_hours is not None:
        where.append("s.processing_hours <= %(max_hours)s")
        args["max_hours"] = f.max_hours
    return where, args


async def search(pool: AsyncConnectionPool, f: Filters, limit: int, offset: int,
                 index: search_index.SearchIndex | None = None) -> dict[str, Any]:
    """Services matching ``f``, best first; from ``index`` (in memory) when it is loaded, else by SQL."""
    snapshot = index.snapshot if index is not None else None
    if snapshot is not None and index is not None:
        prefix = text.prefix_query(f.q)
        if not prefix:
            return snapshot.browse(f, limit, offset)
        try:
            key = (prefix, f.q[:200])
            if key in index.queries:
                tree = index.queries[key]
            else:
                async with pool.connection() as conn:
                    tree = await index.tsquery(conn, *key)
            if tree is not None:
                return snapshot.search(tree, f, limit, offset)
        except search_index.Unsupported:
            pass
    return await search_sql(pool, f, limit, offset)


async def search_sql(pool: AsyncConnectionPool, f: Filters, limit: int, offset: int) -> dict[str, Any]:
    where, args = _where(f)
    args.update(limit=limit, offset=offset)
    prefix = text.prefix_query(f.q)
    if prefix:
        args.update(prefix=prefix, q=f.q[:200])
        # matches come from the full vector (GIN); the rank from the names (hits in names first), cheap to compute
        sql = (f"SELECT {SUMMARY}, ts_rank(s.name_search, query) AS rank, count(*) OVER () AS total "
               "FROM services s, (SELECT to_tsquery('simple', %(prefix)s) || plainto_tsquery('english', %(q)s) "
               "AS query) qq "
               f"WHERE s.search @@ query AND {' AND '.join(where)} ORDER BY rank DESC, s.id "
               "LIMIT %(limit)s OFFSET %(offset)s")
    else:  # browsing: the page walks the primary key; the total is a separate count (no window over everything)
        sql = (f"SELECT {SUMMARY}, NULL::real AS rank, NULL::bigint AS total FROM services s "
               f"WHERE {' AND '.join(where)} ORDER BY s.id LIMIT %(limit)s OFFSET %(offset)s")
    # never prepared: a generic plan cannot see the tsquery and picks worse plans for broad queries (p99 x2)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, args, prepare=False)
        rows = await cur.fetchall()
        total = rows[0]["total"] if rows else None
        if total is None:  # browsing, or an empty page (an offset past the end still reports the total)
            if prefix:
                await cur.execute(
                    "SELECT count(*) AS n FROM services s WHERE s.search @@ (to_tsquery('simple', %(prefix)s) || "
                    f"plainto_tsquery('english', %(q)s)) AND {' AND '.join(where)}", args, prepare=False)
            else:
                await cur.execute(f"SELECT count(*) AS n FROM services s WHERE {' AND '.join(where)}", args)
            total = (await cur.fetchone())["n"]  # type: ignore[index]
    for r in rows:
        r.pop("total")
        if r["rank"] is not None:
            r["rank"] = round(float(r["rank"]), 6)
    return {"total": total, "limit": limit, "offset": offset, "items": rows}


async def service(pool: AsyncConnectionPool, service_id: str, statuses: list[str]) -> dict[str, Any]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {DETAIL} FROM services s JOIN bodies b ON b.id = s.body_id "
                          "WHERE s.id = %s AND s.status = ANY(%s)", (service_id, statuses))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"service {service_id!r} not found")
    row["competent_authority"] = {"id": row["body_id"], "name_en": row.pop("body_name_en"),
                                  "name_ar": row.pop("body_name_ar")}
    return row


async def bodies(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT b.id, b.type, b.name_en, b.name_ar, b.parent_id, "
            "count(s.id) FILTER (WHERE s.status = 'published') AS published_services "
            "FROM bodies b LEFT JOIN services s ON s.body_id = b.id GROUP BY b.id "
            "ORDER BY b.type <> 'ministry', b.name_en")
        return await cur.fetchall()


async def body(pool: AsyncConnectionPool, body_id: str) -> dict[str, Any]:
    everything = await bodies(pool)
    found = next((b for b in everything if b["id"] == body_id), None)
    if found is None:
        raise NotFound(f"body {body_id!r} not found")
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT category, count(*) FROM services WHERE body_id = %s AND status = 'published' "
                                 "GROUP BY category ORDER BY category", (body_id,))
        categories = {c: n for c, n in await cur.fetchall()}
    return {**found, "agencies": [b for b in everything if b["parent_id"] == body_id], "categories": categories}


def _feedback_row(row: dict[str, Any]) -> dict[str, Any]:
    row["created_at"] = row["created_at"].isoformat()
    row["moderated_at"] = row["moderated_at"].isoformat() if row["moderated_at"] else None
    return row


FEEDBACK = "id, service_id, kind, useful, field, text, status, moderator_note, created_at, moderated_at"


async def add_feedback(pool: AsyncConnectionPool, service_id: str, kind: str, useful: bool | None,
                       field_: str | None, body_text: str) -> dict[str, Any]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"INSERT INTO feedback (service_id, kind, useful, field, text) SELECT id, %s, %s, %s, %s FROM services "
            f"WHERE id = %s AND status = 'published' RETURNING {FEEDBACK}",
            (kind, useful, field_, body_text.strip(), service_id))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"service {service_id!r} not found")
    return _feedback_row(row)


async def list_feedback(pool: AsyncConnectionPool, status: str | None, body_id: str | None, limit: int,
                        offset: int) -> dict[str, Any]:
    where, args = ["true"], {"limit": limit, "offset": offset}
    if status:
        where.append("f.status = %(status)s")
        args["status"] = status
    if body_id:
        where.append("s.body_id = %(body)s")
        args["body"] = body_id
    cols = ", ".join(f"f.{c}" for c in FEEDBACK.split(", "))
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {cols}, count(*) OVER () AS total FROM feedback f "
                          f"JOIN services s ON s.id = f.service_id WHERE {' AND '.join(where)} "
                          "ORDER BY f.id LIMIT %(limit)s OFFSET %(offset)s", args)
        rows = await cur.fetchall()
    total = rows[0]["total"] if rows else 0
    for r in rows:
        r.pop("total")
    return {"total": total, "items": [_feedback_row(r) for r in rows]}


async def moderate(pool: AsyncConnectionPool, feedback_id: int, status: str, note: str) -> dict[str, Any]:
    """Move one feedback item along new -> accepted/rejected -> resolved, atomically."""
    allowed_from = TRANSITIONS[status]
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"UPDATE feedback SET status = %s, moderator_note = %s, moderated_at = now() "
            f"WHERE id = %s AND status = ANY(%s) RETURNING {FEEDBACK}", (status, note, feedback_id, list(allowed_from)))
        row = await cur.fetchone()
        if row is None:
            await cur.execute("SELECT status FROM feedback WHERE id = %s", (feedback_id,))
            current = await cur.fetchone()
            if current is None:
                raise NotFound(f"feedback {feedback_id} not found")
            nexts = sorted(t for t, froms in TRANSITIONS.items() if current["status"] in froms)
            raise Conflict(f"feedback {feedback_id} is {current['status']!r} and cannot become {status!r}; "
                           f"allowed from {current['status']!r}: {', '.join(nexts) or 'nothing (final)'}")
    return _feedback_row(row)


async def statistics(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("""
            WITH svc AS (
              SELECT body_id, count(*) AS services,
                     count(*) FILTER (WHERE status = 'published') AS published,
                     count(*) FILTER (WHERE status = 'draft') AS draft,
                     count(*) FILTER (WHERE status = 'withdrawn') AS withdrawn
              FROM services GROUP BY body_id),
            fb AS (
              SELECT s.body_id, count(*) AS feedback,
                     count(*) FILTER (WHERE f.kind = 'useful' AND f.useful) AS useful_yes,
                     count(*) FILTER (WHERE f.kind = 'useful' AND NOT f.useful) AS useful_no,
                     count(*) FILTER (WHERE f.kind = 'wrong_information') AS reports,
                     count(*) FILTER (WHERE f.kind = 'wrong_information' AND f.status = 'new') AS reports_new,
                     count(*) FILTER (WHERE f.kind = 'wrong_information' AND f.status = 'accepted') AS reports_accepted,
                     count(DISTINCT f.service_id) FILTER (WHERE f.kind = 'wrong_information'
                       AND f.status = 'accepted' AND s.status = 'published') AS flagged_services
              FROM feedback f JOIN services s ON s.id = f.service_id GROUP BY s.body_id),
            pay AS (
              SELECT s.body_id, count(*) AS paid_orders, sum(p.amount) AS paid_amount_syp
              FROM payment_orders p JOIN services s ON s.id = p.service_id WHERE p.status = 'paid'
              GROUP BY s.body_id)
            SELECT b.id AS body_id, b.name_en, b.name_ar,
                   coalesce(svc.services, 0) AS services, coalesce(svc.published, 0) AS published,
                   coalesce(svc.draft, 0) AS draft, coalesce(svc.withdrawn, 0) AS withdrawn,
                   coalesce(fb.feedback, 0) AS feedback, coalesce(fb.useful_yes, 0) AS useful_yes,
                   coalesce(fb.useful_no, 0) AS useful_no, coalesce(fb.reports, 0) AS reports,
                   coalesce(fb.reports_new, 0) AS reports_new, coalesce(fb.reports_accepted, 0) AS reports_accepted,
                   coalesce(fb.flagged_services, 0) AS flagged_services,
                   coalesce(pay.paid_orders, 0) AS paid_orders, coalesce(pay.paid_amount_syp, 0)::bigint AS paid_amount_syp
            FROM bodies b LEFT JOIN svc ON svc.body_id = b.id LEFT JOIN fb ON fb.body_id = b.id
                 LEFT JOIN pay ON pay.body_id = b.id
            ORDER BY b.id""")
        rows = await cur.fetchall()
    for r in rows:
        r["correctness_score"] = (round(1 - r["flagged_services"] / r["published"], 4) if r["published"] else None)
    return rows


async def export_rows(pool: AsyncConnectionPool, statuses: list[str], body_id: str | None) -> tuple[list, list]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, type, name_en, name_ar, parent_id FROM bodies ORDER BY id")
        body_rows = await cur.fetchall()
        await cur.execute(f"SELECT {DETAIL} FROM services s JOIN bodies b ON b.id = s.body_id "
                          "WHERE s.status = ANY(%s) AND (%s::text IS NULL OR s.body_id = %s) ORDER BY s.id",
                          (statuses, body_id, body_id))
        service_rows = await cur.fetchall()
    return body_rows, service_rows
