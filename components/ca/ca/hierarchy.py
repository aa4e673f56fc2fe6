"""The CA hierarchy: created once (idempotently), kept fresh (CRLs, OCSP delegates), exported encrypted."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from cryptography.hazmat.primitives.serialization.pkcs12 import PBES
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import connection, transaction
from django_ca.key_backends import key_backends
from django_ca.key_backends.db.models import DBCreatePrivateKeyOptions
from django_ca.models import CertificateAuthority, CertificateRevocationList

from ca.keys import unseal

log = logging.getLogger("ca.hierarchy")
_LOCK = 7_221_030  # advisory lock: one bootstrap at a time across replicas
CRL_VALIDITY = timedelta(hours=24)
CRL_RENEW_BEFORE = timedelta(hours=12)  # regenerate when less than this remains


@dataclass(frozen=True)
class CASpec:
    name: str
    cn: str
    key_type: str
    key_size: int | None
    curve: str | None
    years: int
    path_length: int
    parent: str | None = None


def specs() -> list[CASpec]:
    org = settings.ORGANIZATION
    return [
        CASpec("root", f"{org} Root CA", "RSA", 4096, None, 20, 1),
        CASpec("platform", f"{org} Platform CA", "EC", None, "secp256r1", 10, 0, parent="root"),
        CASpec("citizen", f"{org} Citizen Signature CA", "EC", None, "secp256r1", 10, 0, parent="root"),
    ]


NAMES = ("root", "platform", "citizen")
ISSUING = ("platform", "citizen")


def use_options(ca: CertificateAuthority) -> Any:
    return ca.key_backend.get_use_private_key_options(ca, {})


def _backend_and_options(spec: CASpec) -> tuple[Any, Any]:
    """Issuing CAs go to the HSM when one is configured; the root stays exportable (encrypted in the DB)."""
    if spec.parent is not None and "hsm" in settings.CA_KEY_BACKENDS:
        from django_ca.key_backends.hsm.models import HSMCreatePrivateKeyOptions

        backend = key_backends["hsm"]
        return backend, HSMCreatePrivateKeyOptions.model_validate(
            {"key_label": f"govcloud-{spec.name}", "key_type": spec.key_type, "key_size": spec.key_size,
             "elliptic_curve": spec.curve}, context={"backend": backend})
    return key_backends["default"], DBCreatePrivateKeyOptions(key_type=spec.key_type, key_size=spec.key_size,
                                                              elliptic_curve=spec.curve)


def _create(spec: CASpec, parent: CertificateAuthority | None) -> CertificateAuthority:
    backend, create_options = _backend_and_options(spec)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.ORGANIZATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, spec.cn)])
    kwargs: dict[str, Any] = {}
    if parent is not None:
        kwargs = {"parent": parent, "use_parent_private_key_options": use_options(parent)}
    ca = CertificateAuthority.objects.init(
        name=spec.name,
        key_backend=backend,
        key_backend_options=create_options,
        subject=subject,
        not_after=datetime.now(tz=UTC) + timedelta(days=365 * spec.years),
        path_length=spec.path_length,
        key_type=spec.key_type,
        ocsp_responder_key_validity=3,
        ocsp_response_validity=3600,
        **kwargs,
    )
    log.info("certificate authority created", extra={"fields": {"ca": spec.name, "serial": ca.serial}})
    return ca


def ensure_hierarchy() -> dict[str, str]:
    """Create root, platform and citizen CAs unless they exist; returns name -> created|exists."""
    result: dict[str, str] = {}
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", [_LOCK])
    try:
        existing = {ca.name: ca for ca in CertificateAuthority.objects.filter(name__in=NAMES)}
        for spec in specs():
            if spec.name in existing:
                result[spec.name] = "exists"
                continue
            with transaction.atomic():
                existing[spec.name] = _create(spec, existing[spec.parent] if spec.parent else None)
            result[spec.name] = "created"
        configure_acme()
        maintain(force_crl=any(v == "created" for v in result.values()))
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [_LOCK])
    return result


def configure_acme() -> None:
    """ACME on the platform CA only (its default directory /acme/directory/), issuing the tls-server profile;
    accounts may register without a contact. Off everywhere when the ``acme`` setting is false."""
    CertificateAuthority.objects.exclude(name="platform").filter(acme_enabled=True).update(acme_enabled=False)
    CertificateAuthority.objects.filter(name="platform").update(
        acme_enabled=settings.ACME, acme_registration=True, acme_profile="tls-server", acme_requires_contact=False)


def regenerate_crls(ca: CertificateAuthority) -> None:
    """Both scopes: end-entity certificates (/crl/<ca>/) and CA certificates (/crl/ca/<ca>/); each new CRL also
    replaces the one django-ca's CRL view keeps in the shared cache."""
    opts = use_options(ca)
    for scope in ({"only_contains_user_certs": True}, {"only_contains_ca_certs": True}):
        crl = CertificateRevocationList.objects.create_certificate_revocation_list(
            ca=ca, key_backend_options=opts, next_update=datetime.now(tz=UTC) + CRL_VALIDITY, **scope)
        crl.cache(ca.serial)


def newest_crl(ca: CertificateAuthority, ca_scope: bool = False) -> CertificateRevocationList | None:
    scope = {"only_contains_ca_certs": True} if ca_scope else {"only_contains_user_certs": True}
    return (CertificateRevocationList.objects.scope(serial=ca.serial, **scope)
            .filter(data__isnull=False).newest())


def maintain(force_crl: bool = False) -> dict[str, list[str]]:
    """Renew OCSP delegate certificates when due, CRLs close to their next update, and pre-produced OCSP responses
    past half their validity (the schedule's job)."""
    from ca import ocsp

    done: dict[str, list[str]] = {"crl": [], "ocsp_key": [], "ocsp_responses": []}
    soon = datetime.now(tz=UTC) + CRL_RENEW_BEFORE
    for ca in CertificateAuthority.objects.filter(name__in=NAMES):
        if ca.generate_ocsp_key(use_options(ca)) is not None:
            done["ocsp_key"].append(ca.name)
        crls = [newest_crl(ca), newest_crl(ca, ca_scope=True)]
        if force_crl or any(c is None or c.next_update is None or c.next_update < soon for c in crls):
            regenerate_crls(ca)
            done["crl"].append(ca.name)
    done["ocsp_responses"] = [f"{name}: {n}" for name, n in sorted(ocsp.refresh().items())]
    return done


def maintain_once() -> dict[str, list[str]] | None:
    """maintain() unless another worker/replica is doing it right now (then None)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK])
        if not cur.fetchone()[0]:
            return None
    try:
        return maintain()
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [_LOCK])


def chain(ca: CertificateAuthority) -> list[CertificateAuthority]:
    out = [ca]
    while out[-1].parent_id is not None:
        out.append(out[-1].parent)  # type: ignore[arg-type]
    return out


def signature_check(ca: CertificateAuthority) -> None:
    """Sign and verify a probe with the CA's key (through its backend: HSM keys never leave the HSM)."""
    public = ca.pub.loaded.public_key()
    data = b"govcloud-ca readiness probe"
    opts = use_options(ca)
    if isinstance(public, ec.EllipticCurvePublicKey):
        sig = ca.key_backend.sign_data(ca, opts, data, signature_algorithm=ec.ECDSA(hashes.SHA256()))
        public.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public, rsa.RSAPublicKey):
        sig = ca.key_backend.sign_data(ca, opts, data, algorithm=hashes.SHA256(), padding=padding.PKCS1v15())
        public.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        public.verify(ca.key_backend.sign_data(ca, opts, data), data)  # type: ignore[call-arg,union-attr]


EXPORT_PASSPHRASE_ENV = "GOVCLOUD_SECRET_ROOT_EXPORT_PASSPHRASE"


def export_root(passphrase: bytes) -> bytes:
    """The root key and certificate as PKCS#12 (AES-256-CBC, PBKDF2 600k rounds, HMAC-SHA256) for cold storage."""
    if len(passphrase) < 16:
        raise ValueError("the export passphrase must have at least 16 characters")
    root = CertificateAuthority.objects.get(name="root")
    key = unseal(root.key_backend_options["private_key"]["encrypted_pem"])
    enc = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(600_000)
           .key_cert_algorithm(PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256()).build(passphrase))
    return pkcs12.serialize_key_and_certificates(b"govcloud-root", key, root.pub.loaded, None, enc)  # type: ignore[arg-type]


def export_passphrase() -> bytes:
    value = os.environ.get(EXPORT_PASSPHRASE_ENV, "")
    if not value:
        raise RuntimeError(f"{EXPORT_PASSPHRASE_ENV} is not set: declare root-export-passphrase in secrets")
    return value.encode()
