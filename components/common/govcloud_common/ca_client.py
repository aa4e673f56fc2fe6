"""Get a certificate from govcloud's CA: the key pair and CSR are made here, only the CSR travels.

    from govcloud_common.ca_client import request_certificate
    issued = request_certificate("bus-client", ["payments.mof.bus.gov.example"], token=enrolment_token)
    issued.write("/var/lib/payment/tls")   # key.pem (0600), cert.pem, chain.pem

The CA's URL comes from ``GOVCLOUD_URL_CA`` (declare ``ca`` in ``depends_on``/``calls``). ``token`` is the
CA admin token or a body's enrolment token (bus-client only, names of that body only).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class CAError(RuntimeError):
    """The CA refused or failed the request; ``reason`` is its explanation."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"CA answered {status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass
class IssuedCertificate:
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    serial: str

    def key_pem(self, passphrase: bytes | None = None) -> bytes:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def write(self, directory: str | Path, passphrase: bytes | None = None) -> dict[str, Path]:
        """key.pem (created 0600 before any byte is written), cert.pem, chain.pem (issuing CA .. root)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        key_path = d / "key.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.key_pem(passphrase))
        (d / "cert.pem").write_bytes(self.cert_pem())
        (d / "chain.pem").write_bytes(self.chain_pem())
        return {"key": key_path, "cert": d / "cert.pem", "chain": d / "chain.pem"}


def make_csr(names: list[str], key: ec.EllipticCurvePrivateKey,
             subject: x509.Name | None = None) -> x509.CertificateSigningRequest:
    """A PKCS#10 request: CN = first name (unless ``subject`` is given), the names as DNS/IP subjectAltNames."""
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    if subject is None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if names else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def request_certificate(profile: str, names: list[str], *, token: str, subject: x509.Name | None = None,
                        days: int | None = None, body: str | None = None, base_url: str | None = None,
                        client: httpx.Client | None = None, timeout: float = 30.0) -> IssuedCertificate:
    """Generate an EC P-256 key locally, send only its CSR to the CA, return key + certificate + chain."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(names, key, subject)
    payload: dict[str, object] = {"profile": profile,
                                  "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
    if days is not None:
        payload["days"] = days
    if body is not None:
        payload["body"] = body
    headers = {"Authorization": f"Bearer {token}"}
    if client is None:
        url = (base_url or os.environ.get("GOVCLOUD_URL_CA", "")).rstrip("/")
        if not url:
            raise RuntimeError("GOVCLOUD_URL_CA is not set: declare 'ca' in depends_on or calls")
        with httpx.Client(base_url=url, timeout=timeout) as own:
            response = own.post("/api/v1/certificates", json=payload, headers=headers)
    else:
        response = client.post("/api/v1/certificates", json=payload, headers=headers)
    if response.status_code != 201:
        try:
            detail = response.json().get("detail")
            reason = detail.get("error", str(detail)) if isinstance(detail, dict) else str(detail)
        except ValueError:
            reason = response.text
        raise CAError(response.status_code, reason)
    doc = response.json()
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    if cert.public_key() != key.public_key():
        raise CAError(response.status_code, "the returned certificate is not for the key of this request")
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in doc["chain"]]
    return IssuedCertificate(key=key, certificate=cert, chain=chain, serial=doc["serial"])
