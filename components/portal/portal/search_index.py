"""The catalog's search held in memory: the SQL search's matches, ranks and order, without a query per search.

``store.search`` over SQL costs ~1.7 ms of PostgreSQL CPU per search (GIN bitmap scan, a heap visit per match,
ts_rank, sort): on 2 cores that caps search near 500/s. Here each worker keeps an immutable snapshot of what a
search needs (lexemes of ``services.search``, the positions of ``services.name_search``, the summary columns,
the database's order of ids) and answers from it:

- the tsquery is PostgreSQL's own (``to_tsquery('simple', prefix) || plainto_tsquery('english', q)`` as text,
  parsed here; one small query per distinct search text, then cached), so stemming and stop words are its;
- matching is ``search @@ query`` over the lexemes (prefix operands through a sorted vocabulary);
- the rank is ``ts_rank(name_search, query)`` recomputed the way ``tsrank.c`` does it (``calc_rank_or``, in
  float4 steps), then ordered by rank and the database's collation order of ids;
- anything else (an AND-rooted query, whose rank needs positions across operands) goes to SQL.

The snapshot is rebuilt when the catalog changes: migration 003's triggers ``NOTIFY portal_catalog`` on any
write to ``services`` or ``bodies``, and every worker listens (``follow``). ``tests/test_search_index.py``
compares both paths over thousands of queries.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import re
import struct
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger("portal.search_index")

CHANNEL = "portal_catalog"
SUMMARY = ("id", "body_id", "status", "name_en", "name_ar", "category", "channels", "fee_syp", "processing_time")
_F32 = struct.Struct("f")
WEIGHTS = tuple(_F32.unpack(_F32.pack(w))[0] for w in (0.1, 0.2, 0.4, 1.0))  # ts_rank's defaults, D C B A
_WEIGHT_INDEX = {"D": 0, "C": 1, "B": 2, "A": 3}
QUERY_CACHE = 4096  # distinct search texts whose parsed tsquery is kept


def f32(x: float) -> float:
    return float(_F32.unpack(_F32.pack(x))[0])


_FLOAT4_TEXT: dict[float, float] = {}


def float4_text(x: float) -> float:
    """What a ``real`` becomes through PostgreSQL's text output (shortest digits that round-trip) and psycopg."""
    found = _FLOAT4_TEXT.get(x)
    if found is not None:
        return found
    found = _float4_text(x)
    if len(_FLOAT4_TEXT) < 65536:  # ranks take few distinct values
        _FLOAT4_TEXT[x] = found
    return found


def _float4_text(x: float) -> float:
    for digits in range(1, 10):
        shortest = float(f"{x:.{digits}g}")
        if f32(shortest) == x:
            return shortest
    return x


class Unsupported(Exception):
    """A query this index does not answer exactly as SQL would; the caller uses SQL."""


# --- tsquery text -> tree ----------------------------------------------------------------------------------------
# A node is ("val", lexeme, prefix) or ("and" | "or", left, right).

_TOKEN = re.compile(r"\s*(?:(?P<val>'(?:[^']|'')*')(?::(?P<flags>[*A-Da-d]+))?|(?P<op>[&|()!<]))")


def parse_tsquery(text: str) -> tuple | None:
    """Parse PostgreSQL's tsquery output (``'a':* & ( 'b' | 'c' )``); None for an empty query."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise Unsupported(f"tsquery syntax at {pos}: {text!r}")
        pos = m.end()
        if m.group("val"):
            flags = (m.group("flags") or "").upper()
            if flags.replace("*", ""):
                raise Unsupported("weight-restricted operand")
            raw = m.group("val")[1:-1].replace("''", "'").replace("\\\\", "\\")
            tokens.append(("val", (raw, "*" in flags)))
        else:
            op = m.group("op")
            if op in "!<":
                raise Unsupported("NOT and phrase operators")
            tokens.append(("op", op))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not tokens:
        return None
    at = 0

    def expr_or() -> tuple:
        nonlocal at
        node = expr_and()
        while at < len(tokens) and tokens[at] == ("op", "|"):
            at += 1
            node = ("or", node, expr_and())
        return node

    def expr_and() -> tuple:
        nonlocal at
        node = atom()
        while at < len(tokens) and tokens[at] == ("op", "&"):
            at += 1
            node = ("and", node, atom())
        return node

    def atom() -> tuple:
        nonlocal at
        if at >= len(tokens):
            raise Unsupported("truncated tsquery")
        kind, value = tokens[at]
        at += 1
        if kind == "val":
            return ("val", value[0], value[1])
        if value == "(":
            node = expr_or()
            if at >= len(tokens) or tokens[at] != ("op", ")"):
                raise Unsupported("unbalanced tsquery")
            at += 1
            return node
        raise Unsupported(f"unexpected {value!r} in tsquery")

    tree = expr_or()
    if at != len(tokens):
        raise Unsupported("trailing tsquery text")
    return tree


def operands_in_storage_order(node: tuple) -> list[tuple[str, bool]]:
    """Operands as PostgreSQL stores a tsquery (prefix notation, the right operand before the left)."""
    if node[0] == "val":
        return [(node[1], node[2])]
    return operands_in_storage_order(node[2]) + operands_in_storage_order(node[1])


def pg_qsort(items: list, cmp: Callable[[Any, Any], int]) -> None:
    """PostgreSQL's ``qsort_arg`` (``src/include/lib/sort_template.h``, Bentley-McIlroy), in place.

    Not stable: which of two equal items comes first is what this order decides, so it is followed step by step.
    """

    def med3(a: int, b: int, c: int) -> int:
        if cmp(items[a], items[b]) < 0:
            return b if cmp(items[b], items[c]) < 0 else (c if cmp(items[a], items[c]) < 0 else a)
        return b if cmp(items[b], items[c]) > 0 else (a if cmp(items[a], items[c]) < 0 else c)

    def swap(i: int, j: int) -> None:
        items[i], items[j] = items[j], items[i]

    def vecswap(i: int, j: int, n: int) -> None:
        for k in range(n):
            swap(i + k, j + k)

    def sort(a: int, n: int) -> None:
        while True:
            if n < 7:
                for pm in range(a + 1, a + n):
                    pl = pm
                    while pl > a and cmp(items[pl - 1], items[pl]) > 0:
                        swap(pl, pl - 1)
                        pl -= 1
                return
            if all(cmp(items[i - 1], items[i]) <= 0 for i in range(a + 1, a + n)):
                return
            pm = a + n // 2
            if n > 7:
                pl, pn = a, a + n - 1
                if n > 40:
                    d = n // 8
                    pl = med3(pl, pl + d, pl + 2 * d)
                    pm = med3(pm - d, pm, pm + d)
                    pn = med3(pn - 2 * d, pn - d, pn)
                pm = med3(pl, pm, pn)
            swap(a, pm)
            pa = pb = a + 1
            pc = pd = a + n - 1
            while True:
                while pb <= pc and (r := cmp(items[pb], items[a])) <= 0:
                    if r == 0:
                        swap(pa, pb)
                        pa += 1
                    pb += 1
                while pb <= pc and (r := cmp(items[pc], items[a])) >= 0:
                    if r == 0:
                        swap(pc, pd)
                        pd -= 1
                    pc -= 1
                if pb > pc:
                    break
                swap(pb, pc)
                pb += 1
                pc -= 1
            pn = a + n
            d1 = min(pa - a, pb - pa)
            vecswap(a, pb - d1, d1)
            d1 = min(pd - pc, pn - pd - 1)
            vecswap(pb, pn - d1, d1)
            d1, d2 = pb - pa, pd - pc
            if d1 <= d2:
                if d1 > 1:
                    sort(a, d1)
                if d2 <= 1:
                    return
                a, n = pn - d2, d2
            else:
                if d2 > 1:
                    sort(pn - d2, d2)
                if d1 <= 1:
                    return
                n = d1

    sort(0, len(items))


def _by_bytes(a: tuple[bytes, bool], b: tuple[bytes, bool]) -> int:
    return (a[0] > b[0]) - (a[0] < b[0])


@functools.lru_cache(maxsize=QUERY_CACHE)
def rank_operands(node: tuple) -> tuple[tuple[str, bool], ...]:
    """``SortAndUniqItems``: operands sorted by their bytes, duplicates (by text) removed keeping the first.

    Which of two equal texts is kept matters when their prefix flags differ ('passport' from the English part,
    'passport':* from ours): PostgreSQL's sort decides, so it is reproduced (``pg_qsort``).
    """
    items = [(text.encode(), prefix) for text, prefix in operands_in_storage_order(node)]
    pg_qsort(items, _by_bytes)
    unique: list[tuple[bytes, bool]] = []
    for item in items:
        if not unique or unique[-1][0] != item[0]:
            unique.append(item)
    return tuple((text.decode(), prefix) for text, prefix in unique)


@functools.lru_cache(maxsize=1024)
def name_entry_weight(weights: str) -> float:
    """One tsvector entry's term in ``calc_rank_or`` (float4 steps as in C, then the double division).

    ``weights``: the entry's weight letter per position ('' for an entry without positions).
    """
    ws = [WEIGHTS[_WEIGHT_INDEX[w]] for w in weights] or [WEIGHTS[0]]
    resj, wjm, jm = 0.0, -1.0, 0
    for j, w in enumerate(ws):
        resj = f32(resj + f32(w / ((j + 1) * (j + 1))))
        if w > wjm:
            wjm, jm = w, j
    return f32(f32(wjm + resj) - f32(wjm / ((jm + 1) * (jm + 1)))) / 1.64493406685


@dataclass(frozen=True)
class Doc:
    row: dict[str, Any]  # the summary columns, as the SQL search returns them
    fee_syp: int
    processing_hours: int


def _bits(ints: list[int]) -> int:
    """A set of doc numbers as an int's bits (AND/OR/count of 4,246 docs are a few machine words each)."""
    buf = bytearray((max(ints) >> 3) + 1 if ints else 0)
    for n in ints:
        buf[n >> 3] |= 1 << (n & 7)
    return int.from_bytes(buf, "little")


def _members(bits: int, stop: int | None = None) -> list[int]:
    """The doc numbers in ``bits``, ascending (the first ``stop`` of them)."""
    text = bin(bits)[:1:-1]  # least significant bit first
    out: list[int] = []
    i = text.find("1")
    while i >= 0 and (stop is None or len(out) < stop):
        out.append(i)
        i = text.find("1", i + 1)
    return out


class Snapshot:
    """One immutable view of the catalog's searchable part; docs are numbered in the database's id order."""

    def __init__(self, docs: list[Doc], postings: dict[str, int], masks: dict[tuple[str, str], int],
                 names: dict[str, tuple[array, array]]) -> None:
        self.docs = docs
        self.postings = postings  # lexeme of `search` -> docs (bits)
        self.vocabulary = sorted(postings)
        self.masks = masks  # ("status" | "body_id" | "category" | "channel" | "life_event", value) -> docs (bits)
        self.names = names  # lexeme of `name_search` -> (docs, their terms in calc_rank_or)
        self.name_vocabulary = sorted(names)

    @staticmethod
    def _expand(vocabulary: list[str], text: str, prefix: bool) -> list[str]:
        i = bisect.bisect_left(vocabulary, text)
        if not prefix:
            return [text] if i < len(vocabulary) and vocabulary[i] == text else []
        out = []
        while i < len(vocabulary) and vocabulary[i].startswith(text):
            out.append(vocabulary[i])
            i += 1
        return out

    def _match(self, node: tuple) -> int:
        if node[0] == "val":
            bits = 0
            for word in self._expand(self.vocabulary, node[1], node[2]):
                bits |= self.postings[word]
            return bits
        left = self._match(node[1])
        if node[0] == "and":
            return left & self._match(node[2]) if left else 0
        return left | self._match(node[2])

    def _filter(self, bits: int, f: Any) -> list[int] | int:
        """Apply the filters: bits when only set filters apply, else the list of remaining docs."""
        status = 0
        for s in f.statuses:
            status |= self.masks.get(("status", s), 0)
        bits &= status
        for key, value in (("body_id", f.body), ("category", f.category), ("channel", f.channel),
                           ("life_event", f.life_event)):
            if value and bits:
                bits &= self.masks.get((key, value), 0)
        if f.fee_min is None and f.fee_max is None and f.max_hours is None:
            return bits
        docs = self.docs
        return [n for n in _members(bits) if (f.fee_min is None or docs[n].fee_syp >= f.fee_min)
                and (f.fee_max is None or docs[n].fee_syp <= f.fee_max)
                and (f.max_hours is None or docs[n].processing_hours <= f.max_hours)]

    def browse(self, f: Any, limit: int, offset: int) -> dict[str, Any]:
        kept = self._filter((1 << len(self.docs)) - 1, f)
        if isinstance(kept, int):
            total, page = kept.bit_count(), _members(kept, offset + limit)[offset:]
        else:
            total, page = len(kept), kept[offset:offset + limit]
        items = [{**self.docs[n].row, "rank": None} for n in page]
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    def search(self, tree: tuple, f: Any, limit: int, offset: int) -> dict[str, Any]:
        if tree[0] == "and":
            raise Unsupported("AND-rooted query: ts_rank uses calc_rank_and")
        operands = rank_operands(tree)
        kept = self._filter(self._match(tree), f)
        hits = _members(kept) if isinstance(kept, int) else kept  # ascending doc numbers, i.e. id order
        if not hits:
            return {"total": 0, "limit": limit, "offset": offset, "items": []}
        acc = array("f", bytes(4 * len(self.docs)))  # float4 accumulators: each store rounds like C's `float res`
        for text, prefix in operands:
            for word in self._expand(self.name_vocabulary, text, prefix):
                docs, terms = self.names[word]
                for d, term in zip(docs, terms, strict=True):
                    acc[d] = acc[d] + term
        size = len(operands)
        ranks = array("f", [acc[d] / size for d in hits])  # float / int, stored as float4
        # rank DESC, then id: a stable sort of hits (in id order) by rank alone
        ordered = sorted(range(len(hits)), key=ranks.__getitem__, reverse=True)
        items = [{**self.docs[hits[n]].row, "rank": round(float4_text(ranks[n]), 6)}
                 for n in ordered[offset:offset + limit]]
        return {"total": len(hits), "limit": limit, "offset": offset, "items": items}


async def load(conninfo: str) -> Snapshot:
    """Read the snapshot in one repeatable-read transaction (a consistent catalog)."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            cur = await conn.execute(f"SELECT {', '.join(SUMMARY)}, life_events, processing_hours "
                                     "FROM services ORDER BY id")
            rows = await cur.fetchall()
            numbered = "(SELECT row_number() OVER (ORDER BY id) - 1 AS n, * FROM services) s"
            # postings as text, one row per lexeme: the load never holds 460k Python ints at once (it would keep
            # ~40 MB of freed-but-not-returned heap in every worker)
            cur = await conn.execute(f"SELECT l, string_agg(n::text, ',') FROM {numbered}, "
                                     "unnest(tsvector_to_array(search)) l GROUP BY l")
            lexemes = await cur.fetchall()
            cur = await conn.execute(
                f"SELECT u.lexeme, string_agg(n || ':' || coalesce(array_to_string(u.weights, ''), ''), ' ' "
                f"ORDER BY n) FROM {numbered}, unnest(s.name_search) u GROUP BY u.lexeme")
            name_rows = await cur.fetchall()
    docs: list[Doc] = []
    sets: dict[tuple[str, str], list[int]] = {}
    for n, r in enumerate(rows):
        row = dict(zip(SUMMARY, r[:len(SUMMARY)], strict=True))
        docs.append(Doc(row=row, fee_syp=row["fee_syp"], processing_hours=r[len(SUMMARY) + 1]))
        keys = [("status", row["status"]), ("body_id", row["body_id"]), ("category", row["category"])]
        keys += [("channel", c) for c in row["channels"]] + [("life_event", e) for e in r[len(SUMMARY)]]
        for key in keys:
            sets.setdefault(key, []).append(n)
    names: dict[str, tuple[array, array]] = {}
    for lexeme, entries in name_rows:
        ds, ts = names[lexeme] = (array("i"), array("d"))
        for entry in entries.split():
            n, _, weights = entry.partition(":")
            ds.append(int(n))
            ts.append(name_entry_weight(weights))
    return Snapshot(docs, {lexeme: _bits([int(n) for n in ns.split(",")]) for lexeme, ns in lexemes},
                    {key: _bits(ns) for key, ns in sets.items()}, names)


class SearchIndex:
    """A worker's current snapshot (None until loaded) and its cache of parsed queries."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.snapshot: Snapshot | None = None
        self.queries: dict[tuple[str, str], tuple | None] = {}
        self.loads = 0
        self._lock = asyncio.Lock()

    async def reload(self) -> None:
        async with self._lock:
            self.snapshot = await load(self.conninfo)
            self.loads += 1

    async def tsquery(self, conn: psycopg.AsyncConnection, prefix: str, q: str) -> tuple | None:
        key = (prefix, q)
        if key in self.queries:
            return self.queries[key]
        cur = await conn.execute("SELECT (to_tsquery('simple', %s) || plainto_tsquery('english', %s))::text",
                                 (prefix, q))
        row = await cur.fetchone()
        tree = parse_tsquery(row[0]) if row else None
        if len(self.queries) >= QUERY_CACHE:
            self.queries.pop(next(iter(self.queries)))
        self.queries[key] = tree
        return tree


async def follow(index: SearchIndex, on_change: Callable[[], Awaitable[None]] | None = None,
                 retry: float = 2.0) -> None:
    """Keep ``index`` current: LISTEN, (re)load, and reload on every notification; reconnect on failures."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(index.conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                await index.reload()  # after LISTEN: a change committed from here on is never missed
                if on_change:
                    await on_change()
                async for _ in conn.notifies():
                    await index.reload()
                    if on_change:
                        await on_change()
        except (psycopg.Error, OSError) as exc:
            log.warning("search index: %s; retrying in %.0f s (searches use SQL meanwhile)", exc, retry)
            index.snapshot = None  # changes may be missed while not listening: do not answer from stale data
            await asyncio.sleep(retry)
