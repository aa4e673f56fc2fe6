"""Our REST API over django-ca's Python API: issue by profile (policy in ca.policy), revoke, list, CRLs."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Exists, OuterRef
from django_ca.models import Certificate, CertificateAuthority
from django_ca.profiles import profiles as ca_profiles
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from prometheus_client import Counter
from pydantic import BaseModel, Field

from ca import hierarchy, ocsp
from ca.policy import issue_context
from ca.profiles import PROFILES, PolicyError, check_key

ISSUED = Counter("ca_certificates_issued_total", "Certificates issued", ["profile"])
REFUSED = Counter("ca_issuance_refused_total", "Issuance requests refused by policy", ["profile"])
REVOKED = Counter("ca_certificates_revoked_total", "Certificates revoked", ["reason"])

router = APIRouter(prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])

# RFC 5280 CRLReason names (and codes) -> cryptography's ReasonFlags; removeFromCRL is not a revocation.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified, "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise, "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded, "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold, "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
REASON_CODES = {"0": "unspecified", "1": "keyCompromise", "2": "cACompromise", "3": "affiliationChanged",
                "4": "superseded", "5": "cessationOfOperation", "6": "certificateHold", "9": "privilegeWithdrawn",
                "10": "aACompromise"}


def orm(fn: F) -> F:
    """Run a sync endpoint (FastAPI's threadpool) with Django's per-thread connection hygiene."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()
    return wrapper  # type: ignore[return-value]


# --- authentication ---------------------------------------------------------------------------------------
class Caller(BaseModel):
    admin: bool
    body: str | None = None
    issuer: bool = False  # a platform component holding ca-token: its own TLS and seal certificates only


ISSUER_PROFILES = ("tls-server", "document-signing")
PLATFORM_MEMBERS_DEFAULT = "mof/payment,moct/portal"


def platform_members() -> frozenset[tuple[str, str]]:
    """The platform's own bus members (``body/system``, setting ``platform-members``): the systems a platform
    component holding the issuer token may get bus-client certificates for (payment's notices to the bodies)."""
    spec = os.environ.get("GOVCLOUD_SETTING_PLATFORM_MEMBERS", PLATFORM_MEMBERS_DEFAULT)
    return frozenset((m.split("/", 1)[0].strip(), m.split("/", 1)[1].strip()) for m in spec.split(",") if "/" in m)


def _issuer_bus_body(csr: x509.CertificateSigningRequest, sans: list[x509.GeneralName]) -> str:
    """The body of a bus-client request made with the issuer token: every name a platform member's, one body."""
    names = {str(n.value).lower() for n in sans if isinstance(n, x509.DNSName)}
    names |= {str(a.value).lower() for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    members = platform_members()
    owners = set()
    for name in sorted(names):
        system, _, rest = name.partition(".")
        body = rest.partition(".")[0]
        if (body, system) not in members or name != f"{system}.{body}.bus.{settings.DOMAIN}":
            raise _refuse("bus-client", f"the platform issuer token can only request bus-client names of the "
                                        f"platform's members ({', '.join(sorted('/'.join(m) for m in members))}), "
                                        f"not {name!r}", 403)
        owners.add(body)
    if len(owners) != 1:
        raise _refuse("bus-client", "a bus-client request names exactly one member system")
    return owners.pop()


def _admin_token() -> str:
    token = os.environ.get("GOVCLOUD_SECRET_ADMIN_TOKEN", "")
    if len(token) < 16:
        raise HTTPException(503, "GOVCLOUD_SECRET_ADMIN_TOKEN is not configured")
    return token


def enrolment_token(body: str) -> str:
    """A bus member's token: may request bus-client certificates for its own body only."""
    mac = hmac.new(_admin_token().encode(), f"govcloud-ca-enrol:{body}".encode(), hashlib.sha256).hexdigest()
    return f"body.{body}.{mac}"


def caller(authorization: str = Header("", include_in_schema=False)) -> Caller:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Authorization: Bearer <token> required", headers={"WWW-Authenticate": "Bearer"})
    if hmac.compare_digest(token.encode(), _admin_token().encode()):
        return Caller(admin=True)
    issuer = os.environ.get("GOVCLOUD_SECRET_CA_TOKEN", "")
    if len(issuer) >= 16 and hmac.compare_digest(token.encode(), issuer.encode()):
        return Caller(admin=False, issuer=True)
    if token.startswith("body."):
        body = token.split(".")[1]
        if hmac.compare_digest(token.encode(), enrolment_token(body).encode()):
            return Caller(admin=False, body=body)
    raise HTTPException(403, "invalid token")


def admin(who: Caller = Depends(caller)) -> Caller:
    if not who.admin:
        raise HTTPException(403, "admin token required")
    return who


# --- representations --------------------------------------------------------------------------------------
def _pem(obj: Any) -> str:
    return obj.pub.loaded.public_bytes(Encoding.PEM).decode()


def _ca_or_404(name: str) -> CertificateAuthority:
    try:
        return CertificateAuthority.objects.get(name=name)
    except CertificateAuthority.DoesNotExist:
        raise HTTPException(404, f"no CA named {name!r}") from None


def _cert_or_404(serial: str) -> Certificate:
    clean = serial.replace(":", "").upper().lstrip("0") or "0"
    try:
        return Certificate.objects.select_related("ca").get(serial=clean)
    except Certificate.DoesNotExist:
        raise HTTPException(404, f"no certificate with serial {serial}") from None


def _body_of(cert: Certificate) -> str | None:
    ous = cert.pub.loaded.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(ous[0].value) if cert.profile == "bus-client" and ous else None


def cert_doc(cert: Certificate, pem: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "serial": cert.serial, "ca": cert.ca.name, "profile": cert.profile,
        "subject": cert.pub.loaded.subject.rfc4514_string(),
        "body": _body_of(cert), "not_before": cert.not_before.isoformat(), "not_after": cert.not_after.isoformat(),
        "revoked": cert.revoked, "revoked_reason": cert.revoked_reason or None,
        "revoked_date": cert.revoked_date.isoformat() if cert.revoked_date else None,
        "autogenerated": bool(cert.autogenerated),
    }
    if pem:
        doc["certificate"] = _pem(cert)
        doc["chain"] = chain_pems(cert.ca)
    return doc


_chains: dict[str, list[str]] = {}


def chain_pems(ca: CertificateAuthority) -> list[str]:
    """The issuing CA and its parents, PEM; CA certificates never change, so read once per process."""
    pems = _chains.get(ca.serial)
    if pems is None:
        pems = _chains[ca.serial] = [_pem(c) for c in hierarchy.chain(ca)]
    return list(pems)


def ca_doc(ca: CertificateAuthority) -> dict[str, Any]:
    return {"name": ca.name, "serial": ca.serial, "subject": ca.pub.loaded.subject.rfc4514_string(),
            "parent": ca.parent.name if ca.parent else None, "not_after": ca.not_after.isoformat(),
            "certificate": _pem(ca), "ocsp": f"/ocsp/{ca.serial}/cert/", "crl": f"/crl/{ca.serial}/",
            "ca_crl": f"/crl/ca/{ca.serial}/"}


# --- issuance ---------------------------------------------------------------------------------------------
class IssueRequest(BaseModel):
    profile: str = Field(description="tls-server | bus-client | citizen-signing | ocsp-responder")
    csr: str = Field(description="PKCS#10 request, PEM")
    days: int | None = Field(None, description="lifetime; default and maximum per profile")
    body: str | None = Field(None, description="bus-client: the body the names belong to (admin callers)")


def _refuse(profile: str, reason: str, status: int = 422) -> HTTPException:
    REFUSED.labels(profile if profile in PROFILES else "unknown").inc()
    return HTTPException(status, {"error": reason, "profile": profile})


def _subject(profile: str, csr: x509.CertificateSigningRequest, sans: list[x509.GeneralName]) -> x509.Name:
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.ORGANIZATION)
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    first = next((str(n.value) for n in sans if isinstance(n, x509.DNSName | x509.IPAddress)), None)
    cn = str(cns[0].value) if cns else first
    if profile == "citizen-signing":
        return csr.subject
    if profile == "ocsp-responder":
        return x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([org])
    if not cn:
        raise _refuse(profile, "the CSR carries neither a commonName nor a subjectAltName")
    attrs = [org]
    if profile == "bus-client":
        parts = cn.lower().split(".")
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, parts[1] if len(parts) > 1 else ""))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@router.post("/certificates", status_code=201)
@orm
def issue(req: IssueRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
    profile = PROFILES.get(req.profile)
    if profile is None:
        raise _refuse(req.profile, f"unknown profile {req.profile!r}; known: {sorted(PROFILES)}")
    body = req.body
    if who.issuer:
        if profile.name not in (*ISSUER_PROFILES, "bus-client"):
            raise _refuse(profile.name, f"the platform issuer token can only request {list(ISSUER_PROFILES)} and "
                                        "bus-client certificates of the platform's members", 403)
    elif not who.admin:
        if profile.name != "bus-client":
            raise _refuse(profile.name, f"a body's enrolment token can only request bus-client, not {profile.name}",
                          403)
        body = who.body
    try:
        csr = x509.load_pem_x509_csr(req.csr.encode())
    except ValueError as exc:
        raise _refuse(profile.name, f"malformed CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise _refuse(profile.name, "CSR signature is invalid")
    sans: list[x509.GeneralName] = []
    for ext in csr.extensions:
        if isinstance(ext.value, x509.BasicConstraints) and ext.value.ca:
            raise _refuse(profile.name, "the CSR requests a CA certificate (basicConstraints CA:TRUE): refused")
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = list(ext.value)
    if who.issuer and profile.name == "bus-client":
        body = _issuer_bus_body(csr, sans)
    days = req.days if req.days is not None else profile.default_days
    if not 0 < days <= profile.max_days:
        raise _refuse(profile.name, f"{profile.name}: lifetime {days} days is outside 1..{profile.max_days}")
    try:
        check_key(csr.public_key())
        subject = _subject(profile.name, csr, sans)
        if profile.name == "tls-server" and not sans:
            cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            sans = [x509.DNSName(str(cn))]
        extensions: list[x509.Extension[x509.ExtensionType]] = []
        if sans:
            extensions.append(x509.Extension(x509.SubjectAlternativeName.oid, False, x509.SubjectAlternativeName(sans)))
        if profile.name == "tls-server" and isinstance(csr.public_key(), rsa.RSAPublicKey):
            extensions.append(x509.Extension(x509.KeyUsage.oid, True, x509.KeyUsage(
                digital_signature=True, key_encipherment=True, content_commitment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)))
        ca = _ca_or_404(profile.cas[0])
        with issue_context(profile.name, body):
            cert = Certificate.objects.create_cert(
                ca, hierarchy.use_options(ca), csr, profile=ca_profiles[profile.name], subject=subject,
                not_after=datetime.now(tz=UTC) + timedelta(days=days), extensions=extensions,
                add_issuer_alternative_name=False, san_types_for_common_name=(),
            )
    except PolicyError as exc:
        raise _refuse(profile.name, str(exc)) from None
    ISSUED.labels(profile.name).inc()
    return cert_doc(cert, pem=True)


# --- revocation -------------------------------------------------------------------------------------------
class RevokeRequest(BaseModel):
    reason: str = Field("unspecified", description="RFC 5280 CRLReason name (keyCompromise, ...) or code")
    compromised: datetime | None = None


@router.post("/certificates/{serial}/revoke")
@orm
def revoke(serial: str, req: RevokeRequest, _: Caller = Depends(admin)) -> dict[str, Any]:
    name = REASON_CODES.get(req.reason, req.reason)
    if name not in REASONS:
        raise HTTPException(422, {"error": f"unknown reason {req.reason!r}", "reasons": sorted(REASONS)})
    cert = _cert_or_404(serial)
    if cert.revoked:
        raise HTTPException(409, {"error": "already revoked", "reason": cert.revoked_reason})
    with ocsp.barrier() as propagated:  # listening for the workers' acknowledgements before the change commits
        cert.revoke(reason=REASONS[name], compromised=req.compromised)  # re-signs its OCSP responses (ca.ocsp)
        hierarchy.regenerate_crls(cert.ca)  # CRL reflects the revocation at once
        # every worker (every listening process of every replica) has dropped its in-memory "good"
        spread = propagated(getattr(cert, "_govcloud_ocsp_token", None))
    REVOKED.labels(name).inc()
    cert.refresh_from_db()
    return {**cert_doc(cert), "ocsp": spread}


# --- reading ----------------------------------------------------------------------------------------------
@router.get("/certificates")
@orm
def list_certificates(profile: str | None = None, ca: str | None = None, body: str | None = None,
                      revoked: bool | None = None, autogenerated: bool = False,
                      limit: int = Query(100, le=1000), _: Caller = Depends(admin)) -> list[dict[str, Any]]:
    qs = Certificate.objects.select_related("ca").filter(autogenerated=autogenerated).order_by("-created")
    if profile:
        qs = qs.filter(profile=profile)
    if ca:
        qs = qs.filter(ca__name=ca)
    if revoked is not None:
        qs = qs.filter(revoked=revoked)
    if body:
        qs = qs.filter(profile="bus-client", cn__endswith=f".{body}.bus.{settings.DOMAIN}")
    return [cert_doc(c) for c in qs[:limit]]


@router.get("/certificates/expiring")
@orm
def expiring(days: int = Query(30, ge=0, le=3650), _: Caller = Depends(admin)) -> list[dict[str, Any]]:
    """Unrevoked certificates ending within ``days`` that nothing has replaced: a certificate is superseded (and not
    listed) once the same CA issued one with the same profile and common name that ends later — what a renewal
    (the bus's own certificate, a component's bus-client certificate at each start) leaves behind."""
    now = datetime.now(tz=UTC)
    renewed = Certificate.objects.filter(ca=OuterRef("ca"), profile=OuterRef("profile"), cn=OuterRef("cn"),
                                         revoked=False, not_after__gt=OuterRef("not_after")).exclude(cn="")
    qs = (Certificate.objects.select_related("ca")
          .filter(revoked=False, autogenerated=False, not_after__gt=now, not_after__lte=now + timedelta(days=days))
          .exclude(Exists(renewed))
          .order_by("not_after"))
    return [cert_doc(c) for c in qs]


@router.get("/certificates/{serial}")
@orm
def get_certificate(serial: str, _: Caller = Depends(admin)) -> dict[str, Any]:
    return cert_doc(_cert_or_404(serial), pem=True)


@router.get("/cas")
@orm
def list_cas() -> list[dict[str, Any]]:
    return [ca_doc(ca) for ca in CertificateAuthority.objects.select_related("parent").order_by("created")]


@router.get("/cas/{name}/chain")
@orm
def ca_chain(name: str) -> Response:
    pems = "".join(chain_pems(_ca_or_404(name)))
    return Response(pems, media_type="application/pem-certificate-chain")


@router.get("/cas/{name}/crl")
@orm
def ca_crl(name: str, encoding: str = Query("der", pattern="^(der|pem)$"), scope: str = Query(
        "user", pattern="^(user|ca)$")) -> Response:
    crl = hierarchy.newest_crl(_ca_or_404(name), ca_scope=scope == "ca")
    if crl is None:
        raise HTTPException(503, "no CRL generated yet")
    if encoding == "pem":
        return Response(crl.pem, media_type="application/x-pem-file")
    return Response(bytes(crl.data), media_type="application/pkix-crl")  # type: ignore[arg-type]


@router.get("/enrolment-tokens/{body}")
def get_enrolment_token(body: str, _: Caller = Depends(admin)) -> dict[str, str]:
    from ca.profiles import bodies

    if body not in bodies():
        raise HTTPException(404, f"unknown body {body!r}")
    return {"body": body, "token": enrolment_token(body)}
