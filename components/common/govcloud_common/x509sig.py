"""Signatures made with a certificate's key, checked the one way the platform checks them: a bus log seal, an OCSP
answer signed by its CA or by a responder the CA delegated (RFC 6960 4.2.2.2). Shared by the bus and by govcloud's
own checks (the citizen journey), so both accept and refuse the same answers. Needs only ``cryptography``."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID


def signed(cert: x509.Certificate, signature: bytes, data: bytes, algorithm: Any) -> bool:
    """``signature`` over ``data`` made with ``cert``'s key (EC: ECDSA, RSA: PKCS#1 v1.5) and the hash ``algorithm``;
    False for any other key type or without a hash."""
    pub = cert.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey) and algorithm is not None:
            pub.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(pub, rsa.RSAPublicKey) and algorithm is not None:
            pub.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def ocsp_signed(answer: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
    """The answer is signed by ``issuer`` itself or by a responder certificate it issued for OCSP signing."""
    candidates = [issuer]
    for responder in answer.certificates:
        try:
            eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku and issued_by(responder, issuer):
            candidates.append(responder)
    return any(signed(c, answer.signature, answer.tbs_response_bytes, answer.signature_hash_algorithm)
               for c in candidates)
