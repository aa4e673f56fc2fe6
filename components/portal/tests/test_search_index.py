"""The in-memory search answers exactly what the SQL search answers, and follows the catalog's changes."""

from __future__ import annotations

import asyncio
import csv
import io
import random

import psycopg
import pytest
from fastapi.testclient import TestClient
from portal import models, search_index, store, text
from psycopg_pool import AsyncConnectionPool

from .conftest import ADMIN


def queries(dsn: str, n: int, seed: int) -> list[str]:
    """Searches people type: catalog words in both languages, word beginnings, several words, stop words."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT name_en, name_ar, description_en, description_ar, documents_text FROM services "
                            "ORDER BY md5(id) LIMIT 400").fetchall()
    words = sorted({w.strip("().,،:«»\"") for r in rows for field in r for w in field.split()} - {""})
    rnd = random.Random(seed)
    out = ["passport", "جواز سفر", "الجواز السفر", "احوال", "renewing passports", "the", "of the", "a", "و", "ال",
           "e-mail", "non-conviction record", "passport') OR 1=1; --:* & !", "شهادة", "certificate of", "zzqxv"]
    while len(out) < n:
        picked = [rnd.choice(words) for _ in range(rnd.choice((1, 1, 2, 2, 3, 4)))]
        if rnd.random() < 0.3:  # typed halfway
            picked = [w[:rnd.randint(1, len(w))] for w in picked]
        out.append(" ".join(picked))
    return out


def _filters(rnd: random.Random, q: str) -> tuple[store.Filters, int, int]:
    choice = rnd.randrange(5)
    if choice == 0:
        return store.Filters(q=q), 20, 0
    if choice == 1:
        return store.Filters(q=q, statuses=["draft", "published", "withdrawn"]), 100, rnd.choice((0, 20))
    if choice == 2:
        return store.Filters(q=q, channel=rnd.choice(("online", "office", "phone")), fee_max=5000), 10, 5
    if choice == 3:
        return store.Filters(q=q, body=rnd.choice(("moi", "cra", "moh", "mof")), max_hours=72), 50, 0
    return store.Filters(q=q, category="health", fee_min=1000, life_event="birth"), 20, rnd.choice((0, 5000))


@pytest.mark.asyncio
async def test_memory_search_equals_sql(catalog_dsn: str) -> None:
    index = search_index.SearchIndex(catalog_dsn)
    await index.reload()
    assert index.snapshot is not None
    rnd = random.Random(7)
    compared = unsupported = 0
    async with AsyncConnectionPool(catalog_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        for q in queries(catalog_dsn, 700, seed=11):
            f, limit, offset = _filters(rnd, q)
            expected = await store.search_sql(pool, f, limit, offset)
            prefix = text.prefix_query(q)
            try:
                if not prefix:
                    got = index.snapshot.browse(f, limit, offset)
                else:
                    async with pool.connection() as conn:
                        tree = await index.tsquery(conn, prefix, q[:200])
                    assert tree is not None
                    got = index.snapshot.search(tree, f, limit, offset)
            except search_index.Unsupported:
                unsupported += 1
                continue
            assert got == expected, (q, f)
            compared += 1
            # the hot path skips the response model: it would return every row unchanged
            assert models.ServicePage.model_validate(got).model_dump(mode="json") == got
            # and store.search picks the index, or SQL for what the index leaves to it
            assert await store.search(pool, f, limit, offset, index) == expected
    assert compared >= 650 and unsupported <= 50, (compared, unsupported)


@pytest.mark.asyncio
async def test_browsing_equals_sql(catalog_dsn: str) -> None:
    index = search_index.SearchIndex(catalog_dsn)
    await index.reload()
    assert index.snapshot is not None
    async with AsyncConnectionPool(catalog_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        for f, limit, offset in [(store.Filters(), 20, 0), (store.Filters(), 100, 2800), (store.Filters(), 20, 9000),
                                 (store.Filters(statuses=["draft", "withdrawn"]), 100, 300),
                                 (store.Filters(body="cra", channel="online", fee_max=1000), 100, 0),
                                 (store.Filters(category="health", fee_min=50000, max_hours=72), 100, 0)]:
            assert index.snapshot.browse(f, limit, offset) == await store.search_sql(pool, f, limit, offset)


def test_pg_qsort_sorts() -> None:
    rnd = random.Random(3)

    def cmp(a: tuple[int, int], b: tuple[int, int]) -> int:
        return (a[0] > b[0]) - (a[0] < b[0])

    for n in [*range(12), 40, 41, 57, 200]:
        items = [(rnd.randrange(6), i) for i in range(n)]
        ours = list(items)
        search_index.pg_qsort(ours, cmp)
        assert [k for k, _ in ours] == sorted(k for k, _ in items) and sorted(ours) == sorted(items)
    small = [(1, 0), (0, 1), (1, 2), (0, 3)]
    search_index.pg_qsort(small, cmp)
    assert small == [(0, 1), (0, 3), (1, 0), (1, 2)]  # below 7 items: insertion sort, stable


def test_tsquery_parsing() -> None:
    tree = search_index.parse_tsquery("( 'جواز':* | 'الجواز':* ) & 'سفر':* | 'it''s'")
    assert tree == ("or", ("and", ("or", ("val", "جواز", True), ("val", "الجواز", True)), ("val", "سفر", True)),
                    ("val", "it's", False))
    assert search_index.parse_tsquery("") is None
    for unsupported in ("!'a'", "'a' <-> 'b'", "'a':A", "( 'a'"):
        with pytest.raises(search_index.Unsupported):
            search_index.parse_tsquery(unsupported)


@pytest.mark.asyncio
async def test_every_worker_follows_catalog_changes(seeded_dsn: str) -> None:
    """A write by anyone (another worker, replica, the seed, psql) reaches each worker's index by NOTIFY."""
    index = search_index.SearchIndex(seeded_dsn)
    changed: asyncio.Queue[int] = asyncio.Queue()

    async def on_change() -> None:
        changed.put_nowait(index.loads)

    follower = asyncio.create_task(search_index.follow(index, on_change))
    try:
        await asyncio.wait_for(changed.get(), 60)  # the first load
        async with await psycopg.AsyncConnection.connect(seeded_dsn, autocommit=True) as conn:
            sid = (await (await conn.execute(
                "SELECT id FROM services WHERE status = 'published' ORDER BY id LIMIT 1")).fetchone())[0]  # type: ignore[index]
            await conn.execute("UPDATE services SET name_en = name_en || ' Zyxwvut' WHERE id = %s", (sid,))
        await asyncio.wait_for(changed.get(), 60)
        assert index.snapshot is not None
        tree = search_index.parse_tsquery("'zyxwvut':* | 'zyxwvut'")
        assert tree is not None
        hits = index.snapshot.search(tree, store.Filters(q="zyxwvut"), 20, 0)
        assert [i["id"] for i in hits["items"]] == [sid]
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


def test_import_is_searchable_at_once(writer: TestClient) -> None:
    """The worker that imports reloads before answering; the others follow by notification."""
    item = writer.get("/api/services", params={"limit": 1}).json()["items"][0]
    rows = list(csv.DictReader(io.StringIO(writer.get("/api/export/catalog.csv").text)))
    row = next(r for r in rows if r["id"] == item["id"])
    row["name_en"] += " Qwertzuiop"
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
    w.writeheader()
    w.writerow(row)
    r = writer.post("/api/admin/import", content=out.getvalue(), headers={**ADMIN, "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["updated"] == 1, r.text
    found = writer.get("/api/services", params={"q": "qwertzuiop"}).json()
    assert [i["id"] for i in found["items"]] == [item["id"]]

