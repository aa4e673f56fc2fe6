"""Catalog import: every record validated first, errors reported per record, all-or-nothing, idempotent.

Formats: the CSV the portal exports (``/api/export/catalog.csv``) and the CPSV-AP JSON-LD it exports
(``/api/export/catalog.jsonld``). Existing services are updated, new ones created, identical ones left alone.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, ValidationError, field_validator

from portal.seed import SERVICE_COLUMNS, service_row

DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(\d+)H)?$")
MAX_RECORDS = 20_000


class ImportError_(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid record(s)")
        self.errors = errors


class RequirementRecord(BaseModel):
    id: str = Field(min_length=1, max_length=80)
    key: str = Field("", max_length=80)
    en: str = Field(min_length=2, max_length=300)
    ar: str = Field(min_length=2, max_length=300)
    issuer: str | None = None
    form: Literal["original", "copy"]


class TextRecord(BaseModel):
    en: str = Field(min_length=1, max_length=500)
    ar: str = Field(min_length=1, max_length=500)


class LegalRecord(TextRecord):
    id: str = Field(min_length=1, max_length=120)


class ServiceRecord(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9]{1,15}-\d{4,6}$")
    body_id: str
    status: Literal["draft", "published", "withdrawn"]
    name_en: str = Field(min_length=2, max_length=300)
    name_ar: str = Field(min_length=2, max_length=300)
    description_en: str = Field(min_length=2, max_length=5000)
    description_ar: str = Field(min_length=2, max_length=5000)
    category: str = Field(min_length=1, max_length=60)
    life_events: list[str] = []
    channels: list[Literal["online", "office", "phone"]] = Field(min_length=1)
    fee_syp: int = Field(ge=0, le=10**12)
    fee_legal_basis_en: str = ""
    fee_legal_basis_ar: str = ""
    payment_channels: list[Literal["cash", "bank", "epayment"]] = []
    processing_time: str
    requirements: list[RequirementRecord] = []
    steps: list[TextRecord] = []
    contact: dict[str, str] = {}
    legal_resources: list[LegalRecord] = []

    @field_validator("processing_time")
    @classmethod
    def _duration(cls, value: str) -> str:
        m = DURATION.match(value)
        if not m or not any(m.groups()):
            raise ValueError("processing_time must be an ISO 8601 duration in days and/or hours, e.g. P5D or PT4H")
        return value

    @property
    def processing_hours(self) -> int:
        days, hours = DURATION.match(self.processing_time).groups()  # type: ignore[union-attr]
        return int(days or 0) * 24 + int(hours or 0)

    def as_row(self) -> dict[str, Any]:
        doc = self.model_dump()
        doc["processing_hours"] = self.processing_hours
        return doc


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors()]


def parse_csv(data: bytes) -> list[tuple[int, dict[str, Any] | None, list[str]]]:
    """(line, record or None, parse errors) per data row."""
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    out: list[tuple[int, dict[str, Any] | None, list[str]]] = []
    for row in reader:
        line = reader.line_num
        try:
            record: dict[str, Any] = dict(row)
            for key in ("life_events", "channels", "payment_channels"):
                record[key] = [v for v in (record.get(key) or "").split("|") if v]
            for key in ("requirements", "steps", "contact", "legal_resources"):
                record[key] = json.loads(record.get(key) or ("{}" if key == "contact" else "[]"))
            record.pop("processing_hours", None)
            if None in record:
                raise ValueError(f"{len(record[None])} value(s) beyond the header")
            out.append((line, record, []))
        except (ValueError, TypeError) as exc:
            out.append((line, None, [f"unreadable row: {exc}"]))
    return out


def _last(node: Any) -> str:
    ref = node.get("@id", "") if isinstance(node, dict) else str(node)
    return ref.rstrip("/").rsplit("/", 1)[-1]


def _texts(values: Any) -> dict[str, str]:
    values = values if isinstance(values, list) else [values]
    return {v["@language"]: v["@value"] for v in values if isinstance(v, dict) and "@language" in v}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _requirement(node: dict[str, Any]) -> dict[str, Any]:
    evidence = node.get("cv:hasSupportingEvidence") or {}
    title = _texts(node.get("dct:title"))
    return {"id": node.get("dct:identifier"), "key": node.get("gov:documentKey", ""), "en": title.get("en"),
            "ar": title.get("ar"), "form": _last(evidence.get("dct:type", "")),
            "issuer": _last(evidence["dct:publisher"]) if "dct:publisher" in evidence else None}


def parse_jsonld(data: bytes) -> list[tuple[int, dict[str, Any] | None, list[str]]]:
    """Records from the portal's CPSV-AP JSON-LD export (its compacted ``@graph`` form)."""
    doc = json.loads(data)
    graph = doc.get("@graph") if isinstance(doc, dict) else None
    if not isinstance(graph, list):
        raise ValueError("expected a JSON-LD document with an @graph array")
    laws = {_last(node): {"id": node.get("dct:identifier"), "title": _texts(node.get("dct:title"))}
            for node in graph if isinstance(node, dict) and "eli:LegalResource" in _list(node.get("@type"))}
    out: list[tuple[int, dict[str, Any] | None, list[str]]] = []
    n = 0
    for node in graph:
        types = _list(node.get("@type")) if isinstance(node, dict) else []
        if "cpsv:PublicService" not in types:
            continue
        n += 1
        try:
            title, desc = _texts(node.get("dct:title")), _texts(node.get("dct:description"))
            cost = node.get("cv:hasCost") or {}
            value = float((cost.get("cv:hasValue") or {}).get("@value", "nan"))
            if value != int(value):
                raise ValueError(f"fee {value} is not a whole number of SYP")
            contact = node.get("cv:contactPoint") or {}
            hours = _texts(contact.get("gov:hours"))
            steps = sorted(_list(node.get("gov:step")), key=lambda st: int(st.get("gov:order", 0)))
            basis = _texts(cost.get("gov:legalBasis"))
            record = {
                "id": node.get("dct:identifier"), "body_id": _last(node.get("cv:hasCompetentAuthority", "")),
                "status": _last(node.get("adms:status", "")), "name_en": title.get("en"), "name_ar": title.get("ar"),
                "description_en": desc.get("en"), "description_ar": desc.get("ar"),
                "category": _last(node.get("cv:thematicArea", "")),
                "life_events": [_last(e) for e in _list(node.get("cv:isGroupedBy"))],
                "channels": [_last(c.get("dct:type", "")) for c in _list(node.get("cv:hasChannel"))],
                "fee_syp": int(value), "processing_time": (node.get("cv:processingTime") or {}).get("@value"),
                "requirements": [_requirement(r) for r in _list(node.get("cv:holdsRequirement"))],
                "fee_legal_basis_en": basis.get("en", ""), "fee_legal_basis_ar": basis.get("ar", ""),
                "payment_channels": _list(cost.get("gov:paymentChannel")),
                "steps": [_texts(st.get("dct:title")) for st in steps],
                "contact": {"phone": contact.get("cv:telephone", ""), "email": contact.get("cv:email", ""),
                            "hours_en": hours.get("en", ""), "hours_ar": hours.get("ar", "")},
                "legal_resources": [{"id": laws[ref]["id"], **laws[ref]["title"]} if ref in laws else {"id": ref}
                                    for ref in (_last(x) for x in _list(node.get("cv:hasLegalResource")))],
            }
            out.append((n, record, []))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            out.append((n, None, [f"unreadable service node: {exc}"]))
    return out


def validate(parsed: list[tuple[int, dict[str, Any] | None, list[str]]], bodies: set[str]
             ) -> tuple[list[ServiceRecord], list[dict[str, Any]]]:
    records: list[ServiceRecord] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    if len(parsed) > MAX_RECORDS:
        return [], [{"record": None, "id": None, "errors": [f"more than {MAX_RECORDS} records"]}]
    if not parsed:
        return [], [{"record": None, "id": None, "errors": ["no service records found"]}]
    for number, raw, problems in parsed:
        sid = raw.get("id") if raw else None
        problems = list(problems)
        record = None
        if raw is not None:
            try:
                record = ServiceRecord.model_validate(raw)
            except ValidationError as exc:
                problems += _errors(exc)
        if record is not None:
            if record.body_id not in bodies:
                problems.append(f"body_id: unknown body {record.body_id!r}")
            problems += [f"requirements: unknown issuing body {r.issuer!r}" for r in record.requirements
                         if r.issuer and r.issuer not in bodies]
            if record.fee_syp and not record.payment_channels:
                problems.append("payment_channels: a service with a fee needs at least one payment channel")
            if record.id in seen:
                problems.append(f"id: duplicate of record {seen[record.id]}")
            seen.setdefault(record.id, number)
        if problems:
            errors.append({"record": number, "id": sid, "errors": problems})
        elif record is not None:
            records.append(record)
    return records, errors


async def apply(pool: AsyncConnectionPool, records: list[ServiceRecord]) -> dict[str, int]:
    """Upsert in one transaction: returns created / updated / unchanged counts."""
    columns = ", ".join(SERVICE_COLUMNS)
    compared = [c for c in SERVICE_COLUMNS if c != "id"]
    distinct = (f"({', '.join('services.' + c for c in compared)}) IS DISTINCT FROM "
                f"({', '.join('excluded.' + c for c in compared)})")
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(f"CREATE TEMP TABLE import_services ON COMMIT DROP AS "
                           f"SELECT {columns} FROM services LIMIT 0")
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY import_services ({columns}) FROM STDIN") as copy:
                for r in records:
                    await copy.write_row(service_row(r.as_row()))
            await cur.execute(
                f"INSERT INTO services ({columns}) SELECT {columns} FROM import_services ON CONFLICT (id) DO UPDATE "
                f"SET {', '.join(f'{c} = excluded.{c}' for c in compared)}, updated_at = now() WHERE {distinct} "
                "RETURNING (xmax = 0) AS created")
            changed = [r[0] for r in await cur.fetchall()]
    if changed:
        async with pool.connection() as conn:
            await conn.execute("ANALYZE services")
    created = sum(changed)
    return {"records": len(records), "created": created, "updated": len(changed) - created,
            "unchanged": len(records) - len(changed)}


async def run_import(pool: AsyncConnectionPool, fmt: str, data: bytes, dry_run: bool) -> dict[str, Any]:
    try:
        parsed = parse_csv(data) if fmt == "csv" else parse_jsonld(data)
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise ImportError_([{"record": None, "id": None, "errors": [f"unreadable {fmt}: {exc}"]}]) from None
    async with pool.connection() as conn:
        bodies = {r[0] for r in await (await conn.execute("SELECT id FROM bodies")).fetchall()}
    records, errors = validate(parsed, bodies)
    if errors:
        raise ImportError_(errors)
    if dry_run:
        return {"records": len(records), "applied": False, "dry_run": True}
    try:
        counts = await apply(pool, records)
    except psycopg.errors.IntegrityError as exc:  # a constraint the validation did not foresee
        raise ImportError_([{"record": None, "id": None, "errors": [f"database refused the import: {exc}"]}]) from None
    return {**counts, "applied": True, "dry_run": False}
