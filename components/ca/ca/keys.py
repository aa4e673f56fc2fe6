"""Private keys encrypted at rest in PostgreSQL with the stack secret ``key-passphrase``.

django-ca's ``db`` key backends store plain PEM; these subclasses store PKCS#8 PEM encrypted with PBES2
(AES-256-CBC) under ``GOVCLOUD_SECRET_KEY_PASSPHRASE`` and keep the decrypted key object in process memory
only (decrypting per signature would dominate issuance time). Keys never reach logs, files or arguments.
"""

from __future__ import annotations

import hashlib
import os
import threading
import typing
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.x509.ocsp import OCSPResponse, OCSPResponseBuilder
from django_ca.key_backends.db.backend import DBBackend
from django_ca.key_backends.db.models import (
    DBCreatePrivateKeyOptions,
    DBStorePrivateKeyOptions,
    DBUsePrivateKeyOptions,
)
from django_ca.key_backends.db.ocsp_backend import DBOCSPBackend
from django_ca.utils import generate_private_key

PASSPHRASE_ENV = "GOVCLOUD_SECRET_KEY_PASSPHRASE"
_cache: dict[str, CertificateIssuerPrivateKeyTypes] = {}
_lock = threading.Lock()


def passphrase() -> bytes:
    value = os.environ.get(PASSPHRASE_ENV, "")
    if len(value) < 16:
        raise RuntimeError(f"{PASSPHRASE_ENV} must be set (at least 16 characters) to protect CA keys")
    return value.encode()


def seal(key: CertificateIssuerPrivateKeyTypes) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(passphrase()))
    return pem.decode("ascii")


def unseal(sealed: str) -> CertificateIssuerPrivateKeyTypes:
    digest = hashlib.sha256(sealed.encode()).hexdigest()
    key = _cache.get(digest)
    if key is None:
        try:
            loaded = serialization.load_pem_private_key(sealed.encode(), passphrase())
        except ValueError:
            raise ValueError("cannot decrypt the CA private key: wrong key-passphrase?") from None
        key = typing.cast(CertificateIssuerPrivateKeyTypes, loaded)
        with _lock:
            _cache[digest] = key
    return key


class EncryptedDBBackend(DBBackend):
    """CA keys in the database, encrypted (``key_backend_options.private_key.encrypted_pem``)."""

    name = "encrypted-db"
    title = "Keys in the database, encrypted with the stack's key-passphrase"
    description = title

    def __init__(self, alias: str, **kwargs: Any) -> None:
        super().__init__(alias, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptedDBBackend)

    def __hash__(self) -> int:
        return hash(self.name)

    def create_private_key(self, ca: Any, key_type: Any, options: DBCreatePrivateKeyOptions
                           ) -> tuple[CertificateIssuerPublicKeyTypes, DBUsePrivateKeyOptions]:
        key = generate_private_key(options.key_size, key_type, options.get_elliptic_curve())
        ca.key_backend_options = {"private_key": {"encrypted_pem": seal(key)}}
        use = DBUsePrivateKeyOptions.model_validate({}, context={"ca": ca, "backend": self})
        return typing.cast(CertificateIssuerPublicKeyTypes, key.public_key()), use

    def store_private_key(self, ca: Any, key: CertificateIssuerPrivateKeyTypes, certificate: x509.Certificate,
                          options: DBStorePrivateKeyOptions) -> None:
        ca.key_backend_options = {"private_key": {"encrypted_pem": seal(key)}}

    def get_key(self, ca: Any, use_private_key_options: DBUsePrivateKeyOptions) -> CertificateIssuerPrivateKeyTypes:
        try:
            sealed = ca.key_backend_options["private_key"]["encrypted_pem"]
        except (KeyError, TypeError):
            raise ValueError(f"{ca.name}: no encrypted private key stored") from None
        return unseal(sealed)

    def is_usable(self, ca: Any, use_private_key_options: DBUsePrivateKeyOptions | None = None) -> bool:
        return bool((ca.key_backend_options or {}).get("private_key", {}).get("encrypted_pem"))


class EncryptedDBOCSPBackend(DBOCSPBackend):
    """OCSP delegate keys in the database, encrypted like the CA keys."""

    def create_private_key(self, ca: Any, key_type: Any, key_size: int | None,
                           elliptic_curve: ec.EllipticCurve | None) -> x509.CertificateSigningRequest:
        private_key = generate_private_key(key_size, key_type, elliptic_curve)
        ca.ocsp_key_backend_options["private_key"] = {"encrypted_pem": seal(private_key)}
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
        return builder.sign(private_key, self.get_csr_algorithm(key_type))  # type: ignore[arg-type]

    def sign_ocsp_response(self, ca: Any, builder: OCSPResponseBuilder, signature_hash_algorithm: Any) -> OCSPResponse:
        key = unseal(ca.ocsp_key_backend_options["private_key"]["encrypted_pem"])
        return builder.sign(key, signature_hash_algorithm)  # type: ignore[arg-type]
