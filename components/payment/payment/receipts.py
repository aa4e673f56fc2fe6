"""Signed receipts, verifiable offline with the certificate chain up to the platform CA's root.

A receipt document is ``{"payload": <canonical JSON text>, "signature": <base64>, "algorithm": "ecdsa-sha256" |
"rsa-pss-sha256", "chain": [<leaf PEM>, <intermediate PEM>...]}``; the signature covers ``payload``'s UTF-8 bytes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


class ReceiptSigner(Protocol):
    @property
    def algorithm(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...

    def chain_pem(self) -> list[str]: ...


@dataclass
class KeySigner:
    """Signs with a private key whose certificate chain (leaf first) leads to the platform CA."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    chain: list[x509.Certificate]

    @property
    def algorithm(self) -> str:
        return "ecdsa-sha256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "rsa-pss-sha256"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
                             hashes.SHA256())

    def chain_pem(self) -> list[str]:
        if getattr(self, "_chain_pem", None) is None:  # serialised once: every receipt carries it
            self._chain_pem = [c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain]
        return list(self._chain_pem)

    def key_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @classmethod
    def from_pem(cls, key_pem: str, chain: list[str]) -> KeySigner:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        return cls(key, [x509.load_pem_x509_certificate(p.encode()) for p in chain])


def canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make_receipt(signer: ReceiptSigner, fields: dict[str, Any]) -> dict[str, Any]:
    payload = canonical(fields)
    return {"payload": payload, "signature": base64.b64encode(signer.sign(payload.encode())).decode(),
            "algorithm": signer.algorithm, "chain": signer.chain_pem()}


class InvalidReceipt(ValueError):
    pass


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InvalidReceipt(f"{cert.subject.rfc4514_string()} is not issued by {issuer.subject.rfc4514_string()}") \
            from exc


def verify_receipt(doc: dict[str, Any], trust_anchor_pem: str, at: datetime | None = None) -> dict[str, Any]:
    """Check the chain up to ``trust_anchor_pem`` (the platform root) and the signature; return the receipt fields."""
    root = x509.load_pem_x509_certificate(trust_anchor_pem.encode())
    try:
        chain = [x509.load_pem_x509_certificate(p.encode()) for p in doc["chain"]]
        payload: str = doc["payload"]
        signature = base64.b64decode(doc["signature"], validate=True)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidReceipt(f"malformed receipt: {exc}") from exc
    if not chain:
        raise InvalidReceipt("empty certificate chain")
    when = at or datetime.now(UTC)
    path = list(chain)
    while path and path[-1] == root:  # the anchor may or may not be included
        path.pop()
    if not path:
        raise InvalidReceipt("the chain holds only the trust anchor")
    for i, cert in enumerate(path):
        issuer = path[i + 1] if i + 1 < len(path) else root
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise InvalidReceipt(f"certificate {cert.subject.rfc4514_string()} not valid at {when.isoformat()}")
        _check_signed_by(cert, issuer)
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound as exc:
            raise InvalidReceipt("issuer lacks basicConstraints") from exc
        if not bc.ca:
            raise InvalidReceipt(f"{issuer.subject.rfc4514_string()} is not a CA")
    leaf = chain[0]
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise InvalidReceipt("signing certificate lacks digitalSignature key usage")
    except x509.ExtensionNotFound:
        pass
    pub = leaf.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, payload.encode(), ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, payload.encode(), padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                       hashes.SHA256())
        else:
            raise InvalidReceipt("unsupported key type")
    except InvalidSignature as exc:
        raise InvalidReceipt("signature does not match the receipt") from exc
    fields: dict[str, Any] = json.loads(payload)
    return fields


# -- a local chain: the development signer (no CA configured) and the tests -------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govcloud"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject_cn: str, key: ec.EllipticCurvePrivateKey, issuer_cn: str | None = None,
          issuer_key: ec.EllipticCurvePrivateKey | None = None, ca: bool = False, days: int = 825) -> x509.Certificate:
    now = datetime.now(UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject_cn)).issuer_name(_name(issuer_cn or subject_cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                      encipher_only=False, decipher_only=False), critical=True))
    return b.sign(issuer_key or key, hashes.SHA256())


def local_chain(name: str = "govcloud receipts") -> tuple[KeySigner, x509.Certificate]:
    """A root → intermediate → receipt-signing chain; returns the signer and the root (the trust anchor)."""
    root_key, int_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = issue(f"{name} root", root_key, ca=True)
    inter = issue(f"{name} intermediate", int_key, f"{name} root", root_key, ca=True)
    leaf = issue(f"{name} signer", leaf_key, f"{name} intermediate", int_key)
    return KeySigner(leaf_key, [leaf, inter, root]), root
