"""The CA end to end against a real PostgreSQL: hierarchy, profiles, policy, revocation, CRL, OCSP, export."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from govcloud_common.ca_client import CAError, make_csr, request_certificate

from .conftest import ADMIN, ENV, ISSUER

DOMAIN = ENV["GOVCLOUD_DOMAIN"]


def pem(obj: x509.Certificate) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def csr_pem(names: list[str], key=None, subject: x509.Name | None = None, ca: bool = False) -> str:  # type: ignore[no-untyped-def]
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def issue(client, profile: str, csr: str, headers=ADMIN, **extra):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/certificates", json={"profile": profile, "csr": csr, **extra}, headers=headers)


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], input=stdin.decode() if stdin else None, capture_output=True,
                          text=True, timeout=30)


def citizen_subject() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Amina Haddad"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, "01234567890")])


# --- hierarchy ---------------------------------------------------------------------------------------------
def test_hierarchy_is_created_once_and_chains(client, pki):  # type: ignore[no-untyped-def]
    from ca.hierarchy import ensure_hierarchy
    from django_ca.models import CertificateAuthority

    assert ensure_hierarchy() == {"root": "exists", "platform": "exists", "citizen": "exists"}
    assert ensure_hierarchy() == {"root": "exists", "platform": "exists", "citizen": "exists"}
    assert CertificateAuthority.objects.count() == 3
    assert CertificateAuthority.objects.filter(parent__isnull=True).count() == 1
    d, cas = pki
    assert cas["platform"]["parent"] == cas["citizen"]["parent"] == "root"
    root = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
    assert isinstance(root.public_key(), rsa.RSAPublicKey) and root.public_key().key_size == 4096
    for name in ("platform", "citizen"):
        issuing = x509.load_pem_x509_certificate((d / f"{name}.pem").read_bytes())
        assert isinstance(issuing.public_key(), ec.EllipticCurvePublicKey)
        bc = issuing.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert bc.ca and bc.path_length == 0
        out = openssl("verify", "-x509_strict", "-CAfile", str(d / "root.pem"), str(d / f"{name}.pem"))
        assert out.returncode == 0, out.stdout + out.stderr
    chain = client.get("/api/v1/cas/platform/chain").text
    assert chain.count("BEGIN CERTIFICATE") == 2


def test_keys_are_encrypted_at_rest(ca_db):  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(ca_db) as conn:
        rows = conn.execute("SELECT name, key_backend_options::text, ocsp_key_backend_options::text "
                            "FROM django_ca_certificateauthority").fetchall()
    assert len(rows) == 3
    for name, keys, ocsp_keys in rows:
        assert "ENCRYPTED PRIVATE KEY" in keys, name
        assert "ENCRYPTED PRIVATE KEY" in ocsp_keys, name
        assert "BEGIN PRIVATE KEY" not in keys + ocsp_keys, name


# --- profiles ----------------------------------------------------------------------------------------------
PROFILE_CASES = {
    "tls-server": ([f"portal.{DOMAIN}", f"www.portal.{DOMAIN}"], None, "platform", {"digital_signature"},
                   [ExtendedKeyUsageOID.SERVER_AUTH], 90, "sslserver"),
    "bus-client": ([f"payments.mof.bus.{DOMAIN}"], None, "platform", {"digital_signature"},
                   [ExtendedKeyUsageOID.CLIENT_AUTH], 365, "sslclient"),
    "citizen-signing": ([], citizen_subject(), "citizen", {"digital_signature", "content_commitment"}, [], 730,
                        None),
    "ocsp-responder": ([], x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "platform OCSP")]), "platform",
                       {"digital_signature"}, [ExtendedKeyUsageOID.OCSP_SIGNING], 3, None),
}
KU_ATTRS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign")


@pytest.mark.parametrize("profile", sorted(PROFILE_CASES))
def test_profile_key_usages_lifetime_and_chain(client, pki, tmp_path, profile):  # type: ignore[no-untyped-def]
    names, subject, ca, ku, eku, days, purpose = PROFILE_CASES[profile]
    r = issue(client, profile, csr_pem(names, subject=subject))
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["ca"] == ca and doc["profile"] == profile
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert {a for a in KU_ATTRS if getattr(usage.value, a)} == ku
    try:
        got_eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        got_eku = []
    assert got_eku == eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - datetime.now(tz=UTC)
    assert timedelta(days=days) - timedelta(hours=1) < lifetime <= timedelta(days=days)
    if names:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    if profile == "bus-client":
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "mof"
    if profile == "citizen-signing":
        assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "01234567890"
    assert [x509.load_pem_x509_certificate(p.encode()).subject for p in doc["chain"]] == [
        x509.load_pem_x509_certificate((pki[0] / f"{n}.pem").read_bytes()).subject for n in (ca, "root")]
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem(cert))
    args = ["verify", "-x509_strict", "-CAfile", str(pki[0] / "root.pem"), "-untrusted", str(pki[0] / f"{ca}.pem")]
    if purpose:
        args += ["-purpose", purpose]
    out = openssl(*args, str(leaf))
    assert out.returncode == 0, out.stdout + out.stderr


# --- policy ------------------------------------------------------------------------------------------------
def _error(r) -> str:  # type: ignore[no-untyped-def]
    detail = r.json()["detail"]
    return detail["error"] if isinstance(detail, dict) else str(detail)


def test_bus_member_only_gets_names_of_its_own_body(client):  # type: ignore[no-untyped-def]
    token = client.get("/api/v1/enrolment-tokens/moi", headers=ADMIN).json()["token"]
    member = {"Authorization": f"Bearer {token}"}
    ok = issue(client, "bus-client", csr_pem([f"registry.moi.bus.{DOMAIN}"]), headers=member)
    assert ok.status_code == 201, ok.text
    other = issue(client, "bus-client", csr_pem([f"registry.mof.bus.{DOMAIN}"]), headers=member)
    assert other.status_code == 422
    assert "'moi' may only get names of its own body, not of 'mof'" in _error(other)
    mixed = issue(client, "bus-client", csr_pem([f"a.moi.bus.{DOMAIN}", f"a.mof.bus.{DOMAIN}"]), headers=member)
    assert "more than one body" in _error(mixed)
    outside = issue(client, "bus-client", csr_pem([f"registry.moi.{DOMAIN}"]), headers=member)
    assert "does not follow <system>.<body>.bus." in _error(outside)
    unknown = issue(client, "bus-client", csr_pem([f"x.nobody.bus.{DOMAIN}"]))
    assert "'nobody' is not a known government body" in _error(unknown)
    admin_for = issue(client, "bus-client", csr_pem([f"x.tax.bus.{DOMAIN}"]), body="mof")
    assert "'mof' may only get names of its own body, not of 'tax'" in _error(admin_for)
    wrong_profile = issue(client, "tls-server", csr_pem([f"portal.{DOMAIN}"]), headers=member)
    assert wrong_profile.status_code == 403 and "only request bus-client" in _error(wrong_profile)
    forged = {"Authorization": f"Bearer {token.replace('moi', 'mof')}"}
    assert issue(client, "bus-client", csr_pem([f"a.mof.bus.{DOMAIN}"]), headers=forged).status_code == 403
    assert issue(client, "bus-client", csr_pem([f"a.mof.bus.{DOMAIN}"]), headers={}).status_code == 401


def test_platform_issuer_token_gets_tls_and_seal_certificates_only(client):  # type: ignore[no-untyped-def]
    assert issue(client, "tls-server", csr_pem([f"bus.{DOMAIN}"]), headers=ISSUER).status_code == 201
    seal = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payment receipts"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govcloud")])
    ok = issue(client, "document-signing", csr_pem([], subject=seal), headers=ISSUER)
    assert ok.status_code == 201, ok.text
    cert = x509.load_pem_x509_certificate(ok.json()["certificate"].encode())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment
    refused = issue(client, "bus-client", csr_pem([f"a.moi.bus.{DOMAIN}"]), headers=ISSUER)
    assert refused.status_code == 403 and "can only request" in refused.text
    named = issue(client, "document-signing", csr_pem([f"x.{DOMAIN}"], subject=seal), headers=ISSUER)
    assert named.status_code == 422 and "subjectAltNames are not allowed" in named.text


def test_platform_issuer_token_gets_bus_client_of_platform_members_only(client):  # type: ignore[no-untyped-def]
    ok = issue(client, "bus-client", csr_pem([f"payment.mof.bus.{DOMAIN}"]), headers=ISSUER)
    assert ok.status_code == 201, ok.text
    cert = x509.load_pem_x509_certificate(ok.json()["certificate"].encode())
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "mof"
    for names in ([f"payment.moi.bus.{DOMAIN}"], [f"other.mof.bus.{DOMAIN}"],
                  [f"payment.mof.bus.{DOMAIN}", f"portal.moct.bus.{DOMAIN}"]):
        refused = issue(client, "bus-client", csr_pem(names), headers=ISSUER)
        assert refused.status_code in (403, 422), (names, refused.text)


def test_ca_and_thirty_year_requests_are_refused(client):  # type: ignore[no-untyped-def]
    r = issue(client, "tls-server", csr_pem([f"portal.{DOMAIN}"], ca=True))
    assert r.status_code == 422 and "basicConstraints CA:TRUE" in _error(r)
    r = issue(client, "tls-server", csr_pem([f"portal.{DOMAIN}"]), days=365 * 30)
    assert r.status_code == 422 and "outside 1..397" in _error(r)


def test_policy_holds_outside_our_api(client):  # type: ignore[no-untyped-def]
    """django-ca's own paths (REST API, admin, CLI) go through pre_sign_cert too: a 30-year CA cert is refused."""
    from ca.hierarchy import use_options
    from ca.policy import enforce
    from ca.profiles import PolicyError
    from django_ca.models import Certificate, CertificateAuthority
    from django_ca.profiles import profiles

    ca = CertificateAuthority.objects.get(name="platform")
    csr = x509.load_pem_x509_csr(csr_pem([f"evil.{DOMAIN}"]).encode())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"evil.{DOMAIN}")])
    before = Certificate.objects.count()
    with pytest.raises(PolicyError, match="exceeds the maximum 397"):
        Certificate.objects.create_cert(ca, use_options(ca), csr, profile=profiles["tls-server"], subject=subject,
                                        not_after=datetime.now(tz=UTC) + timedelta(days=365 * 30))
    # django-ca itself refuses a caller's basicConstraints, but keyCertSign is "configurable": ours refuses it
    ku = x509.Extension(x509.KeyUsage.oid, True, x509.KeyUsage(
        digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False))
    with pytest.raises(PolicyError, match="keyUsage"):
        Certificate.objects.create_cert(ca, use_options(ca), csr, profile=profiles["tls-server"], subject=subject,
                                        extensions=[ku])
    with pytest.raises(PolicyError, match="matches no profile"):  # lower-level CertificateAuthority.sign()
        ca.sign(use_options(ca), csr, subject=subject, not_after=datetime.now(tz=UTC) + timedelta(days=365 * 30))
    # and should any path hand the signal a CA:TRUE basicConstraints, the receiver refuses it
    bc = x509.Extension(x509.BasicConstraints.oid, True, x509.BasicConstraints(ca=True, path_length=None))
    with pytest.raises(PolicyError, match="CA:TRUE"):
        enforce(None, ca=ca, csr=csr, subject=subject, extensions=[bc],
                not_after=datetime.now(tz=UTC) + timedelta(days=30))
    with pytest.raises(PolicyError, match="cannot be issued by CA 'platform'"):
        Certificate.objects.create_cert(ca, use_options(ca), csr, profile=profiles["citizen-signing"],
                                        subject=citizen_subject())
    assert Certificate.objects.count() == before


def test_bad_csrs_are_rejected_with_a_reason(client):  # type: ignore[no-untyped-def]
    garbage = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----"
    r = issue(client, "tls-server", garbage)
    assert r.status_code == 422 and "malformed CSR" in _error(r)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    r = issue(client, "tls-server", csr_pem([f"portal.{DOMAIN}"], key=weak))
    assert r.status_code == 422 and "weak key: RSA-1024" in _error(r)
    r = issue(client, "code-signing", csr_pem([f"portal.{DOMAIN}"]))
    assert r.status_code == 422 and "unknown profile" in _error(r)
    r = issue(client, "tls-server", csr_pem(["portal.example.com"]))
    assert "not a host name under gov.test" in _error(r)
    r = issue(client, "tls-server", csr_pem([f"*.{DOMAIN}"]))
    assert "no wildcards" in _error(r)
    r = issue(client, "citizen-signing", csr_pem([], subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A")])))
    assert "11-digit national number" in _error(r)
    rsa_ok = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = issue(client, "tls-server", csr_pem([f"legacy.{DOMAIN}"], key=rsa_ok))
    assert r.status_code == 201, r.text
    ku = x509.load_pem_x509_certificate(r.json()["certificate"].encode()).extensions.get_extension_for_class(
        x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment


# --- revocation, CRL, OCSP ---------------------------------------------------------------------------------
def _ocsp_post(client, ca_serial: str, der: bytes) -> ocsp.OCSPResponse:  # type: ignore[no-untyped-def]
    r = client.post(f"/ocsp/{ca_serial}/cert/", content=der, headers={"Content-Type": "application/ocsp-request"})
    assert r.status_code == 200, r.text
    return ocsp.load_der_ocsp_response(r.content)


def test_revocation_reaches_crl_and_ocsp(client, pki, tmp_path):  # type: ignore[no-untyped-def]
    d, cas = pki
    doc = issue(client, "tls-server", csr_pem([f"revoked.{DOMAIN}"])).json()
    keep = issue(client, "tls-server", csr_pem([f"kept.{DOMAIN}"])).json()
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    issuer = x509.load_pem_x509_certificate((d / "platform.pem").read_bytes())

    r = client.post(f"/api/v1/certificates/{doc['serial']}/revoke", json={"reason": "keyCompromise"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] is True
    assert client.post(f"/api/v1/certificates/{doc['serial']}/revoke", json={"reason": "1"},
                       headers=ADMIN).status_code == 409
    assert client.post(f"/api/v1/certificates/{keep['serial']}/revoke", json={"reason": "removeFromCRL"},
                       headers=ADMIN).status_code == 422

    # CRL: the URL written into the certificate (django-ca's view) and our API give the same signed list
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
    path = dp.split("18030", 1)[1]
    for body in (client.get(path).content, client.get("/api/v1/cas/platform/crl").content):
        crl = x509.load_der_x509_crl(body)
        assert crl.is_signature_valid(issuer.public_key())
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        assert entry is not None
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
        assert crl.get_revoked_certificate_by_serial_number(int(keep["serial"], 16)) is None

    # OCSP: the request built by openssl itself (SHA-1 CertID), its answer verified by openssl
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_url = next(a.access_location.value for a in aia if a.access_method.dotted_string == "1.3.6.1.5.5.7.48.1")
    ocsp_path = ocsp_url.split("18030", 1)[1]
    assert ocsp_path == f"/ocsp/{cas['platform']['serial']}/cert/"
    (tmp_path / "chain.pem").write_bytes((d / "platform.pem").read_bytes() + (d / "root.pem").read_bytes())
    for name, c in (("revoked", doc), ("kept", keep)):
        (tmp_path / f"{name}.pem").write_text(c["certificate"])
        req = tmp_path / f"{name}.req"
        out = openssl("ocsp", "-issuer", str(d / "platform.pem"), "-cert", str(tmp_path / f"{name}.pem"),
                      "-no_nonce", "-reqout", str(req))
        assert out.returncode == 0, out.stderr
        resp = client.post(ocsp_path, content=req.read_bytes(), headers={"Content-Type": "application/ocsp-request"})
        (tmp_path / f"{name}.resp").write_bytes(resp.content)
        out = openssl("ocsp", "-respin", str(tmp_path / f"{name}.resp"), "-issuer", str(d / "platform.pem"),
                      "-cert", str(tmp_path / f"{name}.pem"), "-CAfile", str(tmp_path / "chain.pem"))
        assert "Response verify OK" in out.stderr, out.stdout + out.stderr
        expected = "revoked" if name == "revoked" else "good"
        assert f"{name}.pem: {expected}" in out.stdout, out.stdout
        if name == "revoked":
            assert "Reason: keyCompromise" in out.stdout

    # and a SHA-256 CertID request (cryptography's ocsp module) answers the same
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    answer = _ocsp_post(client, cas["platform"]["serial"], req.public_bytes(serialization.Encoding.DER))
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    assert answer.hash_algorithm.name == "sha256"


# --- listing -----------------------------------------------------------------------------------------------
def test_list_fetch_and_expiring(client):  # type: ignore[no-untyped-def]
    short = issue(client, "tls-server", csr_pem([f"short.{DOMAIN}"]), days=10).json()
    long_ = issue(client, "tls-server", csr_pem([f"long.{DOMAIN}"]), days=200).json()
    soon = {c["serial"] for c in client.get("/api/v1/certificates/expiring?days=30", headers=ADMIN).json()}
    assert short["serial"] in soon and long_["serial"] not in soon
    renewal = issue(client, "tls-server", csr_pem([f"short.{DOMAIN}"]), days=90).json()  # the same name, renewed
    soon = {c["serial"] for c in client.get("/api/v1/certificates/expiring?days=30", headers=ADMIN).json()}
    assert short["serial"] not in soon and renewal["serial"] not in soon  # superseded: nothing to warn about
    listed = client.get("/api/v1/certificates?profile=tls-server&limit=1000", headers=ADMIN).json()
    assert {short["serial"], long_["serial"]} <= {c["serial"] for c in listed}
    assert all(c["profile"] == "tls-server" for c in listed)
    got = client.get(f"/api/v1/certificates/{short['serial']}", headers=ADMIN).json()
    assert got["certificate"] == short["certificate"] and len(got["chain"]) == 2
    assert client.get(f"/api/v1/certificates/{short['serial']}").status_code == 401
    assert client.get("/api/v1/certificates/ABCDEF", headers=ADMIN).status_code == 404


# --- client, export, probes --------------------------------------------------------------------------------
def test_client_keeps_key_local(client, pki, tmp_path):  # type: ignore[no-untyped-def]
    token = client.get("/api/v1/enrolment-tokens/tax", headers=ADMIN).json()["token"]
    issued = request_certificate("bus-client", [f"collector.tax.bus.{DOMAIN}"], token=token, client=client)
    assert issued.certificate.public_key() == issued.key.public_key()
    paths = issued.write(tmp_path / "tls")
    assert paths["key"].stat().st_mode & 0o777 == 0o600
    out = openssl("verify", "-CAfile", str(pki[0] / "root.pem"), "-untrusted", str(paths["chain"]),
                  "-purpose", "sslclient", str(paths["cert"]))
    assert out.returncode == 0, out.stderr
    with pytest.raises(CAError, match="may only get names of its own body"):
        request_certificate("bus-client", [f"collector.mof.bus.{DOMAIN}"], token=token, client=client)
    csr = make_csr([f"x.{DOMAIN}"], ec.generate_private_key(ec.SECP256R1()))
    assert b"PRIVATE" not in csr.public_bytes(serialization.Encoding.PEM)


def test_root_export_decrypts_with_the_passphrase_only(ca_db, tmp_path: Path):  # type: ignore[no-untyped-def]
    from ca.__main__ import main
    from django_ca.models import CertificateAuthority

    out = tmp_path / "root.p12"
    assert main(["export-root", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    data = out.read_bytes()
    key, cert, _ = pkcs12.load_key_and_certificates(data, ENV["GOVCLOUD_SECRET_ROOT_EXPORT_PASSPHRASE"].encode())
    root = CertificateAuthority.objects.get(name="root").pub.loaded
    assert cert == root and key is not None and key.public_key() == root.public_key()
    for wrong in (b"wrong-passphrase-0123456789", ENV["GOVCLOUD_SECRET_KEY_PASSPHRASE"].encode(), None):
        with pytest.raises(ValueError):
            pkcs12.load_key_and_certificates(data, wrong)
    # openssl reads it too (cold-storage tooling), with the passphrase on a pipe, never in argv
    res = subprocess.run(["openssl", "pkcs12", "-in", str(out), "-nokeys", "-passin", "stdin"],
                         input=ENV["GOVCLOUD_SECRET_ROOT_EXPORT_PASSPHRASE"] + "\n", capture_output=True, text=True)
    assert "BEGIN CERTIFICATE" in res.stdout, res.stderr


def test_probes_and_metrics(client):  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == ["bodies", "cas", "crl", "database"]
    metrics = client.get("/metrics").text
    assert "ca_certificates_issued_total" in metrics and "http_requests_total" in metrics


def test_maintenance_renews_nothing_when_fresh(ca_db):  # type: ignore[no-untyped-def]
    from ca.hierarchy import maintain, maintain_once

    assert maintain() == {"crl": [], "ocsp_key": [], "ocsp_responses": []}
    assert sorted(maintain(force_crl=True)["crl"]) == ["citizen", "platform", "root"]
    assert maintain_once() == {"crl": [], "ocsp_key": [], "ocsp_responses": []}


def test_backup_restore_verify_in_a_fresh_database(client, pg_server):  # type: ignore[no-untyped-def]
    import json
    import os
    import sys
    import uuid

    import psycopg

    before = issue(client, "tls-server", csr_pem([f"backed-up.{DOMAIN}"])).json()
    gone = issue(client, "bus-client", csr_pem([f"old.moh.bus.{DOMAIN}"])).json()
    assert client.post(f"/api/v1/certificates/{gone['serial']}/revoke", json={"reason": "superseded"},
                       headers=ADMIN).status_code == 200
    here = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{here.parent / 'common'}"}

    def ca(*args: str, db: str | None = None, stdin: bytes | None = None) -> bytes:
        run_env = {**env, "PGDATABASE": db} if db else env
        res = subprocess.run([sys.executable, "-m", "ca", *args], env=run_env, input=stdin, capture_output=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr.decode()[-2000:]
        return res.stdout

    dump = ca("backup-dump")
    assert b"ENCRYPTED PRIVATE KEY" in dump and b"BEGIN PRIVATE KEY" not in dump
    fresh = "restore_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh}"')
    assert json.loads(ca("backup-restore", db=fresh, stdin=dump).decode().splitlines()[-1])["cas"] == 3
    report = json.loads(ca("backup-verify", "--serial", before["serial"], db=fresh).decode().splitlines()[-1])
    assert report["ok"] and report["cas"] == {"root": "signs", "platform": "signs", "citizen": "signs"}
    assert report["ocsp"][before["serial"]] == "good"
    assert report["ocsp"][gone["serial"]] == "revoked"
    res = subprocess.run([sys.executable, "-m", "ca", "backup-restore"], env={**env, "PGDATABASE": fresh},
                         input=dump, capture_output=True, timeout=60)
    assert res.returncode != 0 and b"already holds certificate authorities" in res.stderr


HSM_SCRIPT = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca.settings")
import django
django.setup()
from datetime import UTC, datetime, timedelta
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django_ca.models import Certificate, CertificateAuthority
from django_ca.profiles import profiles
from ca.hierarchy import use_options
from ca.policy import issue_context
ca = CertificateAuthority.objects.get(name="platform")
name = "hsm-issued." + os.environ["GOVCLOUD_DOMAIN"]
csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
       .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
san = x509.Extension(x509.SubjectAlternativeName.oid, False, x509.SubjectAlternativeName([x509.DNSName(name)]))
with issue_context("tls-server"):
    cert = Certificate.objects.create_cert(ca, use_options(ca), csr, profile=profiles["tls-server"],
                                           subject=csr.subject, extensions=[san],
                                           not_after=datetime.now(tz=UTC) + timedelta(days=30))
print(json.dumps({"serial": cert.serial, "backends": {c.name: c.key_backend_alias
                  for c in CertificateAuthority.objects.all()},
                  "platform_options": sorted(ca.key_backend_options)}))
"""


def test_issuing_ca_keys_in_softhsm2(ca_db, pg_server, tmp_path):  # type: ignore[no-untyped-def]
    """With PKCS#11 configured, issuing CA keys are created in (and sign inside) SoftHSM2; the root stays
    exportable in the database."""
    import json
    import os
    import sys
    import uuid

    import psycopg

    conf = tmp_path / "softhsm2.conf"
    (tmp_path / "tokens").mkdir()
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    label, pin = "govcloud-ca-test", "test-user-pin-4821"
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    init = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                           "--so-pin", "test-so-pin-9173"], env=env, capture_output=True, text=True, timeout=30)
    assert init.returncode == 0, init.stderr
    db = "hsm_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    here = Path(__file__).resolve().parents[1]
    env.update({"PGDATABASE": db, "PYTHONPATH": f"{here}{os.pathsep}{here.parent / 'common'}",
                "GOVCLOUD_SETTING_PKCS11_LIBRARY": "/usr/lib/softhsm/libsofthsm2.so",
                "GOVCLOUD_SETTING_PKCS11_TOKEN": label, "GOVCLOUD_SECRET_HSM_PIN": pin})

    def run(*args: str) -> str:
        res = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
        return res.stdout.strip().splitlines()[-1]

    assert json.loads(run("-m", "ca", "bootstrap"))["hierarchy"] == {
        "root": "created", "platform": "created", "citizen": "created"}
    assert json.loads(run("-m", "ca", "bootstrap"))["hierarchy"]["platform"] == "exists"
    issued = json.loads(run("-c", HSM_SCRIPT))
    assert issued["backends"] == {"root": "default", "platform": "hsm", "citizen": "hsm"}
    assert "private_key" not in issued["platform_options"]  # only a label/id pointing into the HSM
    report = json.loads(run("-m", "ca", "backup-verify", "--serial", issued["serial"]))
    assert report["ok"] and report["cas"] == {"root": "signs", "platform": "signs", "citizen": "signs"}
    assert report["ocsp"][issued["serial"]] == "good"


def test_ocsp_cache_is_cleared_by_revocation(client, pki):  # type: ignore[no-untyped-def]
    import os

    d, cas = pki
    doc = issue(client, "bus-client", csr_pem([f"cache.moh.bus.{DOMAIN}"])).json()
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    issuer = x509.load_pem_x509_certificate((d / "platform.pem").read_bytes())
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    path = f"/ocsp/{cas['platform']['serial']}/cert/"
    first = client.post(path, content=der, headers={"Content-Type": "application/ocsp-request"}).content
    again = client.post(path, content=der, headers={"Content-Type": "application/ocsp-request"}).content
    assert first == again  # served from the cache: byte-identical, same producedAt
    assert ocsp.load_der_ocsp_response(first).certificate_status == ocsp.OCSPCertStatus.GOOD
    with_nonce = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
                  .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False).build()
                  .public_bytes(serialization.Encoding.DER))
    live = ocsp.load_der_ocsp_response(client.post(path, content=with_nonce).content)
    assert live.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert client.post(f"/api/v1/certificates/{doc['serial']}/revoke", json={"reason": "privilegeWithdrawn"},
                       headers=ADMIN).status_code == 200
    after = ocsp.load_der_ocsp_response(client.post(path, content=der).content)
    assert after.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert after.revocation_reason == x509.ReasonFlags.privilege_withdrawn
    bad = ocsp.load_der_ocsp_response(client.post(path, content=b"not an ocsp request").content)
    assert bad.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
