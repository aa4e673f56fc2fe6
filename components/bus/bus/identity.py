"""Who is calling: the member identity in a bus-client certificate, with expiry and revocation checks.

A bus-client certificate (the platform CA's ``bus-client`` profile) names its member system as the DNS name
``<system>.<body>.bus.<domain>`` (subjectAltName and CN; ``OU=<body>``) and carries extendedKeyUsage
clientAuth. TLS has already checked that it
chains to the platform CA (a foreign CA's certificate fails the handshake with ``unknown ca``); time validity
and revocation are checked here so that the refusal is an HTTP error with a reason. Revocation comes from OCSP
(the certificate's AIA) with the CRL (its distribution point) as fallback, cached until the answer's
nextUpdate (at most ``max_age`` seconds); no answer at all means refusal (fail closed).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from govcloud_common.x509sig import issued_by, ocsp_signed

log = logging.getLogger("bus.identity")
_MEMBER = re.compile(r"([a-z][a-z0-9-]{0,30})\.([a-z0-9]+)\.bus\.([a-z0-9.-]+)")


class Refused(Exception):
    """The caller is refused: ``status`` and ``code`` go into the problem+json (or SOAP Fault)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class ClientIdentity:
    body: str
    system: str
    serial: int
    fingerprint: str
    not_after: datetime
    issuer: str
    not_before_ts: float = 0.0
    not_after_ts: float = 0.0
    issuer_not_after_ts: float = 0.0

    @property
    def member(self) -> str:
        return f"{self.body}/{self.system}"


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


class RevocationChecker:
    def __init__(self, http: httpx.AsyncClient, max_age: float = 300.0, clock: Callable[[], float] = time.time,
                 ocsp_timeout: float = 3.0, ca_url: str | None = None) -> None:
        self.http, self.max_age, self.clock, self.timeout = http, max_age, clock, ocsp_timeout
        self.ca_url = ca_url.rstrip("/") if ca_url else None
        self._status: dict[tuple[str, int], tuple[str, float]] = {}  # (issuer fp, serial) -> (status, until)
        self._crls: dict[str, tuple[x509.CertificateRevocationList, float]] = {}
        self._issuer_fp: dict[int, str] = {}
        self.lookups = 0  # network lookups made (tests observe the cache with it)

    def via_ca(self, url: str) -> str:
        """The platform CA as wired (``GOVCLOUD_URL_CA``) for a URL of its responder or CRLs in a certificate.

        Certificates name the CA's public host (``ca.<domain>``), which need not resolve where the bus runs (the
        local target, a cluster without that DNS record); the path identifies the CA, so it is asked directly.
        """
        if not self.ca_url:
            return url
        parts = urlsplit(url)
        return self.ca_url + parts.path + (f"?{parts.query}" if parts.query else "")

    def _until(self, next_update: datetime | None) -> float:
        now = self.clock()
        if next_update is None:
            return now + self.max_age
        return min(now + self.max_age, next_update.timestamp())

    async def status(self, cert: x509.Certificate, issuer: x509.Certificate) -> str:
        """'good' or 'revoked'; raises Refused when neither OCSP nor a CRL gives an answer."""
        fp = self._issuer_fp.get(id(issuer))
        if fp is None:
            fp = self._issuer_fp[id(issuer)] = issuer.fingerprint(hashes.SHA256()).hex()
        key = (fp, cert.serial_number)
        cached = self._status.get(key)
        if cached and cached[1] > self.clock():
            return cached[0]
        errors: list[str] = []
        for fetch in (self._ocsp, self._crl):
            try:
                answer = await fetch(cert, issuer)
            except Exception as exc:
                errors.append(f"{fetch.__name__.strip('_')}: {type(exc).__name__}: {exc}")
                continue
            if answer is not None:
                status, until = answer
                self._status[key] = (status, until)
                return status
        raise Refused(403, "revocation-status-unavailable",
                      "revocation status of the client certificate could not be established"
                      + (f" ({'; '.join(errors)})" if errors else " (no OCSP responder or CRL in the certificate)"))

    async def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate) -> tuple[str, float] | None:
        try:
            aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        except x509.ExtensionNotFound:
            return None
        urls = [self.via_ca(d.access_location.value) for d in aia
                if d.access_method == AuthorityInformationAccessOID.OCSP]
        if not urls:
            return None
        for algorithm in (hashes.SHA256(), hashes.SHA1()):
            req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
            self.lookups += 1
            resp = await self.http.post(urls[0], content=req.public_bytes(serialization.Encoding.DER),
                                        headers={"content-type": "application/ocsp-request"}, timeout=self.timeout)
            resp.raise_for_status()
            answer = ocsp.load_der_ocsp_response(resp.content)
            if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                continue
            if answer.serial_number != cert.serial_number or not self._ocsp_signed(answer, issuer):
                raise ValueError("OCSP response not signed by the issuer or its delegated responder")
            if answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN:
                continue
            status = "revoked" if answer.certificate_status == ocsp.OCSPCertStatus.REVOKED else "good"
            return status, self._until(answer.next_update_utc)
        return None

    @staticmethod
    def _ocsp_signed(answer: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
        return ocsp_signed(answer, issuer)  # the CA, or a responder it delegated (the same check as govcloud's)

    async def _crl(self, cert: x509.Certificate, issuer: x509.Certificate) -> tuple[str, float] | None:
        try:
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            return None
        urls = [self.via_ca(n.value) for d in cdp for n in (d.full_name or [])
                if isinstance(n, x509.UniformResourceIdentifier)]
        if not urls:
            return None
        url = urls[0]
        cached = self._crls.get(url)
        if cached is None or cached[1] <= self.clock():
            self.lookups += 1
            resp = await self.http.get(url, timeout=self.timeout)
            resp.raise_for_status()
            data = resp.content
            crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
                   else x509.load_der_x509_crl(data))
            if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                raise ValueError(f"CRL at {url} is not signed by {issuer.subject.rfc4514_string()}")
            cached = (crl, self._until(crl.next_update_utc))
            self._crls[url] = cached
        revoked = cached[0].get_revoked_certificate_by_serial_number(cert.serial_number) is not None
        return ("revoked" if revoked else "good"), cached[1]


class IdentityVerifier:
    def __init__(self, issuers: list[x509.Certificate], revocation: RevocationChecker | None,
                 clock: Callable[[], float] = time.time, domain: str = "") -> None:
        self.issuers = issuers
        self.domain = domain
        self.revocation = revocation
        self.clock = clock
        self._parsed: dict[bytes, tuple[ClientIdentity, x509.Certificate, x509.Certificate]] = {}

    async def identify(self, der: bytes | None) -> ClientIdentity:
        if not der:
            raise Refused(401, "client-certificate-required",
                          "the bus accepts only mutual TLS: present a bus-client certificate from the platform CA")
        entry = self._parsed.get(der)
        if entry is None:
            entry = self._parse(der)
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[der] = entry
        identity, cert, issuer = entry
        now_ts = self.clock()
        if identity.not_before_ts <= now_ts <= identity.not_after_ts and now_ts <= identity.issuer_not_after_ts:
            pass  # the common case, without datetime arithmetic
        else:
            self._check_times(identity, cert, issuer, datetime.fromtimestamp(now_ts, UTC))
        if self.revocation is not None and await self.revocation.status(cert, issuer) == "revoked":
            raise Refused(403, "certificate-revoked",
                          f"client certificate {identity.member} (serial {cert.serial_number:x}) is revoked")
        return identity

    @staticmethod
    def _check_times(identity: ClientIdentity, cert: x509.Certificate, issuer: x509.Certificate,
                     now: datetime) -> None:
        if now > cert.not_valid_after_utc:
            raise Refused(403, "certificate-expired",
                          f"client certificate {identity.member} (serial {cert.serial_number:x}) expired at "
                          f"{cert.not_valid_after_utc.isoformat()}")
        if now < cert.not_valid_before_utc:
            raise Refused(403, "certificate-not-yet-valid",
                          f"client certificate is valid only from {cert.not_valid_before_utc.isoformat()}")
        if now > issuer.not_valid_after_utc:
            raise Refused(403, "issuer-expired", f"issuing CA {identity.issuer} expired")

    def _parse(self, der: bytes) -> tuple[ClientIdentity, x509.Certificate, x509.Certificate]:
        cert = x509.load_der_x509_certificate(der)
        issuer = next((ca for ca in self.issuers if issued_by(cert, ca)), None)
        if issuer is None:
            raise Refused(403, "unknown-issuer",
                          f"client certificate issued by {cert.issuer.rfc4514_string()}, not by the platform CA")
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise Refused(403, "not-a-bus-client-certificate",
                          "client certificate lacks extendedKeyUsage clientAuth (bus-client profile)")
        try:
            sans = [str(n) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            sans = []
        cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        members = {(m.group(2), m.group(1)) for n in {*sans, *cns} if (m := _MEMBER.fullmatch(n.lower()))
                   and (not self.domain or m.group(3) == self.domain)}
        if len(members) != 1:
            raise Refused(403, "not-a-bus-client-certificate",
                          f"certificate {cert.subject.rfc4514_string()} does not name exactly one member system as "
                          f"<system>.<body>.bus.{self.domain or '<domain>'}")
        body, system = members.pop()
        ous = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        if any(ou != body for ou in ous):
            raise Refused(403, "not-a-bus-client-certificate", f"organizationalUnit {ous} is not the body {body!r}")
        identity = ClientIdentity(
            body=body, system=system, serial=cert.serial_number,
            fingerprint=hashlib.sha256(der).hexdigest(), not_after=cert.not_valid_after_utc,
            issuer=issuer.subject.rfc4514_string(), not_before_ts=cert.not_valid_before_utc.timestamp(),
            not_after_ts=cert.not_valid_after_utc.timestamp(),
            issuer_not_after_ts=issuer.not_valid_after_utc.timestamp(),
        )
        return identity, cert, issuer
