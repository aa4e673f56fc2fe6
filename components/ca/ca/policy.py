"""Issuance policy, enforced in django-ca's ``pre_sign_cert`` signal for every signing path.

django-ca's REST API, admin, CLI and ACME enforce no profile rules (upstream issue 168), so the rules live
here, where every certificate passes before its signature: our API sets ``issue_context`` (profile and
requesting body); anything else is held to the profile its extended key usages imply.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.x509 import BasicConstraints

from ca.profiles import PROFILE_ALIASES, PROFILES, PolicyError, check_certificate, infer_profile

log = logging.getLogger("ca.policy")


@dataclass(frozen=True)
class IssueContext:
    profile: str
    body: str | None = None


_context: ContextVar[IssueContext | None] = ContextVar("ca_issue_context", default=None)


@contextlib.contextmanager
def issue_context(profile: str, body: str | None = None) -> Iterator[None]:
    token = _context.set(IssueContext(PROFILE_ALIASES.get(profile, profile), body))
    try:
        yield
    finally:
        _context.reset(token)


def enforce(sender: Any, ca: Any, csr: Any, not_after: datetime, subject: Any, extensions: Any,
            **kwargs: Any) -> None:
    """``pre_sign_cert`` receiver: raise PolicyError (and so abort signing) unless the policy allows it."""
    ctx = _context.get()
    exts = list(extensions)
    for ext in exts:  # whatever the profile: no path issues a CA certificate through pre_sign_cert
        if isinstance(ext.value, BasicConstraints) and ext.value.ca:
            raise PolicyError("end-entity profiles cannot issue CA certificates (basicConstraints CA:TRUE)")
    profile = PROFILES.get(ctx.profile) if ctx else infer_profile(exts)
    if profile is None:
        raise PolicyError(f"unknown profile {ctx.profile if ctx else ''!r}; known: {sorted(PROFILES)}")
    lifetime = (not_after - datetime.now(tz=UTC)).total_seconds() / 86400
    try:
        check_certificate(profile, ca.name, csr.public_key(), subject, exts, lifetime, ctx.body if ctx else None)
    except PolicyError as exc:
        log.warning("issuance refused", extra={"fields": {"profile": profile.name, "ca": ca.name,
                                                          "reason": str(exc)}})
        raise
