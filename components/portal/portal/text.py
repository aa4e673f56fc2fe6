"""Arabic/English search normalisation, mirrored by the SQL function ``portal_normalize`` (migration 001)."""

from __future__ import annotations

import re

# alef forms -> bare alef, taa marbuta -> haa, alef maqsura -> yaa; tatweel and diacritics removed
_MAP = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ة": "ه", "ى": "ي"})  # noqa: RUF001
_DROP = re.compile("[\u0640\u064b-\u065f\u0670]")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_ARTICLE = re.compile(r"^(?:و|ف|ب|ك|ل)?ال(?=\w{2,})")


def normalize(text: str) -> str:
    return _DROP.sub("", text.lower().translate(_MAP))


def strip_article(token: str) -> str:
    """``الجواز`` -> ``جواز`` (also و/ف/ب/ك/ل + ال); other words are left as they are."""
    return _ARTICLE.sub("", token)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def prefix_query(text: str, max_tokens: int = 8) -> str:
    """A ``to_tsquery('simple', ...)`` string: every word as a prefix, with and without the article.

    One-letter words match whole words only: as prefixes they would match nearly the whole catalog.
    """
    parts = []
    for tok in tokens(text)[:max_tokens]:
        bare = strip_article(tok)
        alts = sorted({tok, bare}) if bare != tok else [tok]
        parts.append("(" + " | ".join(f"'{a}':*" if len(a) > 1 else f"'{a}'" for a in alts) + ")")
    return " & ".join(parts)
