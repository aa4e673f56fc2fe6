"""The generator alone: exact counts, determinism, plausible content; the Python and SQL normalisers agree."""

from __future__ import annotations

import re
from collections import Counter

import psycopg
import pytest
from govcloud_common.bodies import load_bodies
from portal import catalog, text

BODIES = load_bodies()


@pytest.fixture(scope="module")
def services() -> list[catalog.Service]:
    return catalog.generate(BODIES)


def test_counts(services: list[catalog.Service]) -> None:
    assert len(BODIES) == 26
    assert len(services) == catalog.TOTAL_SERVICES == 4246
    assert Counter(s.status for s in services)["published"] == catalog.PUBLISHED_SERVICES == 2894
    assert {s.body_id for s in services} == {b.id for b in BODIES}
    assert set(Counter(s.status for s in services)) == {"draft", "published", "withdrawn"}


def test_deterministic(services: list[catalog.Service]) -> None:
    again = catalog.generate(BODIES)
    assert catalog.catalog_digest(again) == catalog.catalog_digest(services)
    small = [catalog.generate(BODIES[:3], seed=seed, total=300, published=200) for seed in (1, 1, 2)]
    assert small[0] == small[1] and small[0] != small[2]


def test_content_is_plausible(services: list[catalog.Service]) -> None:
    assert len({s.id for s in services}) == len(services)
    assert len({(s.body_id, s.name_en) for s in services}) == len(services)
    arabic = re.compile("[\u0600-\u06ff]")
    for s in services:
        assert arabic.search(s.name_ar) and arabic.search(s.description_ar), s.id
        assert s.name_en.isascii() and s.name_en[0].isupper(), s.id
        assert isinstance(s.fee_syp, int) and s.fee_syp >= 0
        assert (s.fee_syp == 0) == (s.payment_channels == []) == (s.fee_legal_basis_en == "")
        assert re.fullmatch(r"P\d+D|PT\d+H", s.processing_time), s.processing_time
        assert s.channels and set(s.channels) <= set(catalog.CHANNELS)
        assert s.requirements and all(r["form"] in ("original", "copy") for r in s.requirements)
        assert {r["key"] for r in s.requirements} >= {"national-id", "application"}
        assert all(r["issuer"] is None or r["issuer"] in {b.id for b in BODIES} for r in s.requirements)
        assert s.steps and s.legal_resources and s.contact["email"].endswith(".gov.sy")
    passports = [s for s in services if "passport" in s.name_en.lower()]
    assert passports and all(s.body_id == "moi" for s in passports if s.name_en.lower().endswith(("passport",)))


def test_body_loader_validates(tmp_path) -> None:
    bad = tmp_path / "bodies.yaml"
    bad.write_text("- {id: aa, type: ministry, en: A, ar: أ}\n- {id: bb, type: agency, parent: zz, en: B, ar: ب}\n")
    with pytest.raises(ValueError, match="unknown parent 'zz'"):
        load_bodies(bad)


NORMALISED = [
    ("أحوال", "احوال"), ("إصدار", "اصدار"), ("آثار", "اثار"), ("شهادة", "شهاده"), ("مستشفى", "مستشفي"),
    ("جَوَازُ", "جواز"), ("جـــواز", "جواز"), ("Passport", "passport"), ("ٱلقرآن", "القران"),
]


def test_normalize_python_and_sql_agree(pg_dsn: str) -> None:
    from govcloud_common import db

    db.migrate("portal", pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        for raw, expected in NORMALISED:
            assert text.normalize(raw) == expected, raw
            assert conn.execute("SELECT portal_normalize(%s)", (raw,)).fetchone()[0] == expected, raw
        words = conn.execute("SELECT portal_search_words('الجواز والسفر (العاجل) جواز')").fetchone()[0]
        assert words.split() == ["الجواز", "والسفر", "(العاجل)", "جواز", "جواز", "سفر", "(عاجل)", "جواز"]


def test_prefix_query() -> None:
    assert text.prefix_query("الجواز  سفر") == "('الجواز':* | 'جواز':*) & ('سفر':*)"
    assert text.prefix_query("it's; drop") == "('it':*) & ('s') & ('drop':*)"
    assert text.prefix_query("  ...  ") == ""


def test_bodies_file_lookup(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from govcloud_common import bodies

    assert bodies.bodies_file() == bodies.REPO_PATH  # a checkout reads infra/data/bodies.yaml
    own = tmp_path / "b.yaml"
    own.write_text("- {id: aa, type: ministry, en: Ministry A, ar: وزارة أ}\n", encoding="utf-8")
    monkeypatch.setenv("GOVCLOUD_BODIES_FILE", str(own))
    assert [b.id for b in load_bodies()] == ["aa"]
    monkeypatch.setenv("GOVCLOUD_BODIES_FILE", str(tmp_path / "missing.yaml"))
    assert bodies.bodies_file() == bodies.REPO_PATH  # falls through to the next location
