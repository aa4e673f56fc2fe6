"""Pre-produced OCSP on the real multi-worker server (openssl as the client) and ACME with the certbot project's
``acme`` library: account, order, an http-01 challenge served here, finalize, a chain to the platform CA."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import os
import random
import subprocess
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from .conftest import ADMIN, ENV
from .test_ca import csr_pem, issue, openssl

DOMAIN = ENV["GOVCLOUD_DOMAIN"]
OCSP_HEADERS = {"Content-Type": "application/ocsp-request"}


def _post(base: str, path: str, der: bytes) -> bytes:
    with httpx.Client(base_url=base, timeout=10) as c:  # a fresh connection: any worker may take it
        r = c.post(path, content=der, headers=OCSP_HEADERS)
    assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response", r.text
    return r.content


def _openssl_ocsp(base: str, path: str, d: Path, cert: Path, chain: Path, nonce: bool = False) -> str:
    out = openssl("ocsp", "-issuer", str(d / "platform.pem"), "-cert", str(cert), "-url", base + path,
                  "-CAfile", str(chain), *([] if nonce else ["-no_nonce"]))
    assert out.returncode == 0 and "Response verify OK" in out.stderr, out.stdout + out.stderr
    return out.stdout


def test_pre_produced_ocsp_on_two_workers_and_revocation_reaches_every_worker(served, client, pki, tmp_path):  # type: ignore[no-untyped-def]
    d, cas = pki
    doc = issue(client, "tls-server", csr_pem([f"preproduced.{DOMAIN}"])).json()
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    issuer = x509.load_pem_x509_certificate((d / "platform.pem").read_bytes())
    (tmp_path / "cert.pem").write_text(doc["certificate"])
    chain = tmp_path / "chain.pem"
    chain.write_bytes((d / "platform.pem").read_bytes() + (d / "root.pem").read_bytes())
    path = f"/ocsp/{cas['platform']['serial']}/cert/"

    # signed at issuance (on the producer thread of the process that issued): stored before anyone asked
    from ca.ocsp import producer

    producer.flush()
    with psycopg.connect(f"dbname={os.environ['PGDATABASE']}", autocommit=True) as conn:
        rows = conn.execute("SELECT algorithm, status FROM govcloud_ca_ocsp_response WHERE serial = %s ORDER BY 1",
                            (doc["serial"],)).fetchall()
    assert rows == [("sha1", "good")]  # the CertID hash clients must support (RFC 5019); SHA-256 on first use

    sha1 = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    answers = {_post(served, path, sha1) for _ in range(24)}
    assert len(answers) == 1  # the same pre-signed bytes from every worker (one producedAt)
    good = ocsp.load_der_ocsp_response(answers.pop())
    assert good.certificate_status == ocsp.OCSPCertStatus.GOOD and good.serial_number == cert.serial_number
    assert good.next_update_utc - good.this_update_utc == timedelta(hours=1)
    for _ in range(4):  # openssl builds its own (SHA-1) request, POSTs it and verifies the delegate's signature
        assert "cert.pem: good" in _openssl_ocsp(served, path, d, tmp_path / "cert.pem", chain)

    # RFC 5019 GET, base64 then URL-encoded; SHA-256 CertID gets its own pre-signed answer
    sha256 = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build().public_bytes(
        serialization.Encoding.DER)
    r = httpx.get(served + path + urllib.parse.quote(base64.b64encode(sha256).decode(), safe=""))
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    by_get = ocsp.load_der_ocsp_response(r.content)
    assert by_get.certificate_status == ocsp.OCSPCertStatus.GOOD and by_get.hash_algorithm.name == "sha256"
    assert r.content == _post(served, path, sha256)  # signed once, then stored like the SHA-1 one

    # revoke through the served API: it returns once every listening process evicted its copy
    rv = httpx.post(f"{served}/api/v1/certificates/{doc['serial']}/revoke", json={"reason": "keyCompromise"},
                    headers=ADMIN, timeout=30)
    assert rv.status_code == 200, rv.text
    spread = rv.json()["ocsp"]
    assert spread["workers"] >= 3 and spread["acknowledged"] == spread["workers"]  # 2 workers + this process

    with psycopg.connect(f"dbname={os.environ['PGDATABASE']}", autocommit=True) as conn:
        rows = conn.execute("SELECT algorithm, status FROM govcloud_ca_ocsp_response WHERE serial = %s ORDER BY 1",
                            (doc["serial"],)).fetchall()
    assert rows == [("sha1", "revoked"), ("sha256", "revoked")]

    # no stale "good" from any worker, at once
    for _ in range(24):
        after = ocsp.load_der_ocsp_response(_post(served, path, sha1))
        assert after.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert after.revocation_reason == x509.ReasonFlags.key_compromise
    for _ in range(4):
        out = _openssl_ocsp(served, path, d, tmp_path / "cert.pem", chain)
        assert "cert.pem: revoked" in out and "Reason: keyCompromise" in out
    # a request with a nonce is answered live (the nonce echoed), with the same status
    out = _openssl_ocsp(served, path, d, tmp_path / "cert.pem", chain, nonce=True)
    assert "cert.pem: revoked" in out and "WARNING" not in out


def test_ocsp_unknown_serial_foreign_issuer_and_garbage(served, pki):  # type: ignore[no-untyped-def]
    d, cas = pki
    issuer = x509.load_pem_x509_certificate((d / "platform.pem").read_bytes())
    path = f"/ocsp/{cas['platform']['serial']}/cert/"
    own = ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, hashes.SHA1()).build()  # hashes of the CA
    never_issued = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        own.issuer_name_hash, own.issuer_key_hash, x509.random_serial_number(), hashes.SHA1()).build()
    foreign = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x01" * 20, b"\x02" * 20, x509.random_serial_number(), hashes.SHA1()).build()
    for req in (never_issued, foreign):
        answer = ocsp.load_der_ocsp_response(_post(served, path, req.public_bytes(serialization.Encoding.DER)))
        assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED  # RFC 5019 §2.2.3
    garbage = ocsp.load_der_ocsp_response(_post(served, path, b"not an OCSP request"))
    assert garbage.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    r = httpx.get(served + path + "%%%")
    assert ocsp.load_der_ocsp_response(r.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # the CA certificate (AIA caIssuers) as static bytes from the same front
    r = httpx.get(f"{served}/issuer/{cas['platform']['serial']}.der")
    assert r.status_code == 200 and x509.load_der_x509_certificate(r.content) == issuer


def test_memory_never_keeps_an_answer_read_before_an_eviction(ca_db):  # type: ignore[no-untyped-def]
    from ca.ocsp import Memory

    m = Memory(entries=2)
    key = ("CA", 10, "sha1")
    until = datetime.now(tz=UTC).timestamp() + 60
    m.put(key, until, b"good", m.generation)
    assert m.get(key) is None  # not listening: nothing is kept in memory
    m.reset(live=True)
    read_at = m.generation  # a table read starts ...
    m.evict("CA", "A")  # ... a revocation's notification arrives ...
    m.put(key, until, b"stale good", read_at)  # ... the read finishes: not kept
    assert m.get(key) is None
    m.put(key, until, b"good", m.generation)
    assert m.get(key) == b"good"
    m.evict("CA", "A")
    assert m.get(key) is None
    for n in range(3):  # bounded: least recently used out
        m.put(("CA", n, "sha1"), until, b"x", m.generation)
    assert m.get(("CA", 0, "sha1")) is None and m.get(("CA", 2, "sha1")) == b"x"


def test_maintenance_re_signs_responses_past_half_their_validity(client):  # type: ignore[no-untyped-def]
    from ca.hierarchy import maintain
    from ca.models import OcspResponse
    from ca.ocsp import producer

    doc = issue(client, "tls-server", csr_pem([f"aging.{DOMAIN}"])).json()
    producer.flush()
    old = datetime.now(tz=UTC) - timedelta(minutes=40)
    OcspResponse.objects.filter(serial=doc["serial"]).update(this_update=old)
    assert maintain()["ocsp_responses"] == ["platform: 1"]
    assert all(r.this_update > old + timedelta(minutes=30) for r in OcspResponse.objects.filter(serial=doc["serial"]))
    assert maintain()["ocsp_responses"] == []


# --- ACME ------------------------------------------------------------------------------------------------
class _Challenges(http.server.BaseHTTPRequestHandler):
    tokens: dict[str, bytes] = {}

    def do_GET(self) -> None:
        prefix = "/.well-known/acme-challenge/"
        body = self.tokens.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


def test_acme_http01_order_gives_a_certificate_chaining_to_the_platform_ca(served, pki, tmp_path):  # type: ignore[no-untyped-def]
    import josepy as jose
    from acme import challenges, crypto_util, messages
    from acme import client as acme_client

    d, _ = pki
    # the http-01 answer must come from port 80 of the identifier: an unused loopback address of our own
    ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    try:
        responder = http.server.ThreadingHTTPServer((ip, 80), _Challenges)
    except OSError as exc:
        pytest.fail(f"cannot serve the http-01 challenge on {ip}:80 (root needed): {exc}")
    threading.Thread(target=responder.serve_forever, daemon=True).start()
    try:
        account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = acme_client.ClientNetwork(account_key, alg=jose.ES256, user_agent="govcloud-ca-test")
        directory = acme_client.ClientV2.get_directory(served + "/acme/directory/", net)
        acme = acme_client.ClientV2(directory, net=net)
        account = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        assert account.body.status == "valid"

        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(key_pem, ipaddrs=[ipaddress.ip_address(ip)]))
        for authz in order.authorizations:
            challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = challb.response_and_validation(account_key)
            _Challenges.tokens[challb.chall.encode("token")] = validation.encode()
            acme.answer_challenge(challb, response)
        order = acme.poll_and_finalize(order, deadline=datetime.now() + timedelta(seconds=60))
    finally:
        responder.shutdown()
        responder.server_close()

    pems = [p + "-----END CERTIFICATE-----\n" for p in order.fullchain_pem.split("-----END CERTIFICATE-----")
            if "BEGIN" in p]
    leaf = x509.load_pem_x509_certificate(pems[0].encode())
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress) == [ipaddress.ip_address(ip)]
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])  # the tls-server profile
    assert leaf.public_key() == key.public_key()
    (tmp_path / "leaf.pem").write_text(pems[0])
    (tmp_path / "chain.pem").write_text("".join(pems[1:]))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(d / "root.pem"), "-untrusted", str(tmp_path / "chain.pem"),
                          "-purpose", "sslserver", str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    assert x509.load_pem_x509_certificate(pems[1].encode()).subject == x509.load_pem_x509_certificate(
        (d / "platform.pem").read_bytes()).subject

    # the replay nonces live in the cache every worker shares (PostgreSQL), which is why 2 workers work
    with psycopg.connect(f"dbname={os.environ['PGDATABASE']}", autocommit=True) as conn:
        nonces = conn.execute("SELECT count(*) FROM govcloud_ca_cache WHERE cache_key LIKE %s",
                              ("%acme-nonce-%",)).fetchone()
    assert nonces is not None and nonces[0] > 0


def test_an_answer_signed_from_a_state_read_before_a_revocation_never_replaces_it(client):  # type: ignore[no-untyped-def]
    from ca.models import OcspResponse
    from ca.ocsp import _signer, _store, producer
    from django_ca.models import Certificate

    doc = issue(client, "tls-server", csr_pem([f"race.{DOMAIN}"])).json()
    producer.flush()
    cert = Certificate.objects.select_related("ca").get(serial=doc["serial"])
    read_before = datetime.now(tz=UTC)  # a table miss (or the maintenance job) read the certificate: still good
    late_good = _signer(cert.ca).rows(cert, read_before)
    assert client.post(f"/api/v1/certificates/{doc['serial']}/revoke", json={"reason": "superseded"},
                       headers=ADMIN).status_code == 200
    _store(late_good)  # ... and writes its answer only now
    assert set(OcspResponse.objects.filter(serial=doc["serial"]).values_list("status", flat=True)) == {"revoked"}
