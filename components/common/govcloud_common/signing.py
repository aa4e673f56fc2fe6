"""HMAC-SHA256 message signatures of the switch protocol (components/switch/PROTOCOL.md, "Signatures"); shared by the switch and payment.

``X-Switch-Signature: t=<unix seconds>,v1=<hex hmac-sha256(key, "<t>.<METHOD>.<path>." + body)>``
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Switch-Signature"
TOLERANCE_S = 300


def sign(key: str, method: str, path: str, body: bytes, now: float) -> str:
    t = int(now)
    mac = hmac.new(key.encode(), f"{t}.{method.upper()}.{path}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(key: str, header: str | None, method: str, path: str, body: bytes, now: float) -> str | None:
    """None when the signature is valid and fresh, else the reason it is not."""
    if not header:
        return "missing signature"
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return "malformed signature"
    if abs(now - t) > TOLERANCE_S:
        return "stale signature"
    want = hmac.new(key.encode(), f"{t}.{method.upper()}.{path}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, given):
        return "bad signature"
    return None
