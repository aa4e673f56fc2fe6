"""Health layers that exist only when their components do (certificates, the citizen journey)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from infra.model import StackModel
from infra.ops.health import DEGRADED, DOWN, OK, Check
from infra.runtime.base import Runtime

EXPIRY_WARNING_DAYS = 14


def certificates_layer(model: StackModel, runtime: Runtime, client: httpx.Client | None = None,
                       days: int = EXPIRY_WARNING_DAYS) -> list[Check]:
    """The CA's issued certificates expiring within ``days`` (degraded), and its CA chain's validity."""
    from infra.ops.journey import one_line, stack_secret

    base = runtime.endpoint("ca", "http").rstrip("/")
    token = stack_secret(model)("ca", "admin-token")
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0))
    checks: list[Check] = []
    try:
        for name, probe in (("expiring", lambda: _expiring(http, base, token, days)),
                            ("ca chain", lambda: _chain(http, base, days))):
            start = datetime.now(UTC)
            try:
                status, detail = probe()
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                status, detail = DOWN, f"{name}: {type(exc).__name__}: {one_line(str(exc))}"
            checks.append(Check("certificates", name, status, detail,
                                round((datetime.now(UTC) - start).total_seconds(), 3)))
    finally:
        if own:
            http.close()
    return checks


def _expiring(http: httpx.Client, base: str, token: str | None, days: int) -> tuple[str, str]:
    if not token:
        return DEGRADED, "no CA admin token in the stack's state: cannot list issued certificates"
    resp = http.get(f"{base}/api/v1/certificates/expiring", params={"days": days},
                    headers={"authorization": f"Bearer {token}"})
    resp.raise_for_status()
    soon = resp.json()
    if not soon:
        return OK, f"no issued certificate expires within {days} days"
    first = soon[0]
    return DEGRADED, (f"{len(soon)} expire within {days} days; first {first['subject']} ({first['profile']}, "
                      f"serial {first['serial']}) on {first['not_after'][:16]}")


def _chain(http: httpx.Client, base: str, days: int) -> tuple[str, str]:
    resp = http.get(f"{base}/api/v1/cas")
    resp.raise_for_status()
    cas = {c["name"]: (c, x509.load_pem_x509_certificate(c["certificate"].encode())) for c in resp.json()}
    if not cas:
        return DOWN, "the CA has no certificate authorities"
    now = datetime.now(UTC)
    problems: list[str] = []
    warnings: list[str] = []
    for name, (doc, cert) in cas.items():
        parent = cas.get(doc["parent"])[1] if doc.get("parent") in cas else None  # type: ignore[index]
        if doc.get("parent") and parent is None:
            problems.append(f"{name}: parent {doc['parent']!r} unknown")
            continue
        try:
            cert.verify_directly_issued_by(parent or cert)
        except (ValueError, TypeError, InvalidSignature):
            problems.append(f"{name}: not signed by {doc.get('parent') or 'itself'}")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            problems.append(f"{name}: not valid now (until {cert.not_valid_after_utc:%Y-%m-%d})")
        elif cert.not_valid_after_utc <= now + timedelta(days=days):
            warnings.append(f"{name} expires {cert.not_valid_after_utc:%Y-%m-%d}")
    if problems:
        return DOWN, "; ".join(problems)
    if warnings:
        return DEGRADED, "; ".join(warnings)
    soonest = min(cas.items(), key=lambda kv: kv[1][1].not_valid_after_utc)
    return OK, (f"{len(cas)} CAs chain to the root ({', '.join(cas)}); soonest expiry {soonest[0]} "
                f"{soonest[1][1].not_valid_after_utc:%Y-%m-%d}")


def layers(model: StackModel, runtime: Runtime, journey: bool) -> list[Callable[[], list[Check]]]:
    from infra.manifests.workloads import stack_components
    from infra.ops.journey import journey_layer, wants_journey

    present = {s.name for s in stack_components(model)}
    out: list[Callable[[], list[Check]]] = []
    if "ca" in present:
        out.append(lambda: certificates_layer(model, runtime))
    if journey and wants_journey(model):
        out.append(lambda: journey_layer(model, runtime))
    return out
