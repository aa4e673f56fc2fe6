"""A throwaway PKI for the bus tests: root + issuing CA (EC P-256), an OCSP/CRL responder over real HTTP,
the bus's server certificate and bus-client certificates (good, expired, revoked, foreign CA, wrong profile), and
the CA API's issuance endpoint (``POST /api/v1/certificates``, as components/ca answers it) for renewals.
Keys exist only in a temporary directory for the session."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


def _name(**parts: str) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in parts.items()])


DOMAIN = "gov.test"


def member(system: str, body: str) -> x509.Name:
    """The CA's bus-client subject: CN=<system>.<body>.bus.<domain>, OU=<body>, O=<organization>."""
    return _name(O="govcloud", OU=body, CN=f"{system}.{body}.bus.{DOMAIN}")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_ca(subject: x509.Name, issuer: Ca | None = None, path_len: int | None = 1) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    cert = b.sign(issuer.key if issuer else key, hashes.SHA256())
    return Ca(key, cert)


@dataclass
class Pki:
    dir: Path
    root: Ca
    issuing: Ca
    foreign: Ca
    base_url: str
    revoked: set[int] = field(default_factory=set)
    ocsp_requests: int = 0
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    token: str = "test-ca-token"                     # the CA API's bearer token (POST /api/v1/certificates)
    lifetime: dt.timedelta = dt.timedelta(days=90)   # of certificates the CA API issues (tls-server's default)
    issued: list[x509.Certificate] = field(default_factory=list)

    @property
    def ca_bundle(self) -> Path:
        return self.dir / "ca.pem"

    def issue(self, name: str, subject: x509.Name, *, ca: Ca | None = None, client: bool = True,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              san_ip: bool = False) -> tuple[Path, Path]:
        ca = ca or self.issuing
        key = ec.generate_private_key(ec.SECP256R1())
        eku = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
             .not_valid_after(not_after or NOW + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
             .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                 AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(f"{self.base_url}/ocsp"))]),
                 critical=False)
             .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                 [x509.UniformResourceIdentifier(f"{self.base_url}/crl")], None, None, None)]), critical=False))
        if san_ip:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        elif (cn := subject.get_attributes_for_oid(NameOID.COMMON_NAME)) and "." in str(cn[0].value):
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(str(cn[0].value))]), critical=False)
        cert = b.sign(ca.key, hashes.SHA256())
        crt, key_file = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(_pem(cert) + (_pem(ca.cert) if ca is not self.foreign else b""))
        key_file.write_bytes(_key_pem(key))
        key_file.chmod(0o600)
        self.files[name] = (crt, key_file)
        return crt, key_file

    def sign_csr(self, doc: dict[str, object]) -> dict[str, object]:
        """The CA API's answer to ``{"profile": "tls-server", "csr": PEM}``: signed by the issuing CA."""
        csr = x509.load_pem_x509_csr(str(doc["csr"]).encode())
        now = dt.datetime.now(dt.UTC)
        b = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.issuing.cert.subject)
             .public_key(csr.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + self.lifetime)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
             .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                            critical=False))
        cert = b.sign(self.issuing.key, hashes.SHA256())
        self.issued.append(cert)
        return {"certificate": _pem(cert).decode(), "chain": [_pem(self.issuing.cert).decode(),
                                                              _pem(self.root.cert).decode()],
                "serial": f"{cert.serial_number:x}"}

    def serial(self, name: str) -> int:
        return x509.load_pem_x509_certificates(self.files[name][0].read_bytes())[0].serial_number

    def crl(self) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.issuing.cert.subject)
             .last_update(NOW - dt.timedelta(minutes=5)).next_update(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)))
        for serial in self.revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(NOW - dt.timedelta(minutes=1)).build())
        return b.sign(self.issuing.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp(self, der: bytes) -> bytes:
        self.ocsp_requests += 1
        req = ocsp.load_der_ocsp_request(der)
        serial = req.serial_number
        leaf = next((x509.load_pem_x509_certificates(c.read_bytes())[0] for c, _ in self.files.values()
                     if x509.load_pem_x509_certificates(c.read_bytes())[0].serial_number == serial), None)
        if leaf is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
                serialization.Encoding.DER)
        status = ocsp.OCSPCertStatus.REVOKED if serial in self.revoked else ocsp.OCSPCertStatus.GOOD
        now = dt.datetime.now(dt.UTC)
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf, issuer=self.issuing.cert, algorithm=req.hash_algorithm, cert_status=status,
            this_update=now, next_update=now + dt.timedelta(minutes=10),
            revocation_time=NOW if status == ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, self.issuing.cert)
        return b.sign(self.issuing.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def build_pki(directory: Path) -> tuple[Pki, ThreadingHTTPServer]:
    holder: dict[str, Pki] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/crl":
                self._reply(holder["pki"].crl(), "application/pkix-crl")
            elif self.path == "/healthz":
                self._reply(b"{}", "application/json")
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/api/v1/certificates":
                if self.headers.get("authorization") != f"Bearer {holder['pki'].token}":
                    self.send_error(401)
                    return
                body = json.dumps(holder["pki"].sign_csr(json.loads(data))).encode()
                self.send_response(201)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/ocsp" and not getattr(holder["pki"], "ocsp_down", False):
                self._reply(holder["pki"].ocsp(data), "application/ocsp-response")
            else:
                self.send_error(503)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = make_ca(_name(C="SY", O="govcloud", CN="govcloud test root CA"), path_len=1)
    issuing = make_ca(_name(C="SY", O="govcloud", CN="govcloud test bus-client CA"), root, path_len=0)
    foreign = make_ca(_name(C="XX", O="elsewhere", CN="foreign root CA"), path_len=0)
    pki = Pki(directory, root, issuing, foreign, f"http://127.0.0.1:{server.server_address[1]}")
    holder["pki"] = pki
    pki.ca_bundle.write_bytes(_pem(root.cert) + _pem(issuing.cert))
    pki.issue("bus", _name(O="govcloud", CN="bus"), client=False, san_ip=True)
    pki.issue("portal", member("portal", "moi"))
    pki.issue("clinic", member("clinic", "moh"))
    pki.issue("stranger", member("unregistered", "moh"))
    pki.issue("expired", member("portal", "moi"), not_before=NOW - dt.timedelta(days=60),
              not_after=NOW - dt.timedelta(days=1))
    pki.issue("revoked", member("portal", "moi"))
    pki.issue("foreign", member("portal", "moi"), ca=foreign)
    pki.issue("server-profile", member("portal", "moi"), client=False)
    pki.issue("anonymous", _name(O="govcloud", CN="portal"))
    pki.issue("other-domain", _name(O="govcloud", OU="moi", CN="portal.moi.bus.elsewhere.example"))
    pki.revoked.add(pki.serial("revoked"))
    return pki, server
