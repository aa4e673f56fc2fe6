"""Backup hook: dump (stdout) and restore (stdin) the CA's tables with keys still encrypted; verify proves the
restored CA signs with every key and its OCSP responder answers for certificates issued before the backup."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from django.test import Client
from django_ca.models import Certificate, CertificateAuthority
from psycopg import sql

from ca import hierarchy


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                        "AND table_name LIKE 'django\\_ca\\_%' AND table_type = 'BASE TABLE' ORDER BY 1")
    return [r[0] for r in rows]


def dump(out: BinaryIO | None = None) -> None:
    """django-ca's tables (CAs with encrypted keys, certificates, CRLs) as COPY text, one snapshot, to stdout.

    Format per table: a JSON header line {"table", "columns"}, the COPY rows, then a line ``\\.``.
    """
    out = out or sys.stdout.buffer
    with psycopg.connect("", autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for table in _tables(conn):
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s ORDER BY ordinal_position", (table,))]
            out.write(json.dumps({"table": table, "columns": cols}).encode() + b"\n")
            col_sql = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            with conn.cursor().copy(sql.SQL("COPY {} ({}) TO STDOUT").format(sql.Identifier(table), col_sql)) as cp:
                for chunk in cp:
                    out.write(bytes(chunk))
            out.write(b"\\.\n")
    out.flush()


def restore(data: BinaryIO | None = None) -> dict[str, Any]:
    """Load a dump from stdin into a migrated, empty database (refuses to mix with an existing CA)."""
    if CertificateAuthority.objects.exists():
        raise SystemExit("restore refused: this database already holds certificate authorities")
    stream = data or sys.stdin.buffer
    with psycopg.connect("", autocommit=False) as conn:
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        known = set(_tables(conn))
        while header := stream.readline():
            meta = json.loads(header)
            if meta["table"] not in known:
                raise SystemExit(f"restore refused: unknown table {meta['table']!r} (schema older than the dump?)")
            col_sql = sql.SQL(", ").join(sql.Identifier(c) for c in meta["columns"])
            query = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(meta["table"]), col_sql)
            with conn.cursor().copy(query) as cp:
                for line in iter(stream.readline, b""):
                    if line == b"\\.\n":
                        break
                    cp.write(line)
            if "id" in meta["columns"]:
                conn.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({t}, 'id'), COALESCE(max(id), 1), "
                                     "max(id) IS NOT NULL) FROM {i}").format(t=sql.Literal(meta["table"]),
                                                                            i=sql.Identifier(meta["table"])))
        conn.commit()
    return {"cas": CertificateAuthority.objects.count(), "certificates": Certificate.objects.count()}


def _verify_signed_by(cert: x509.Certificate, issuer_public: Any) -> None:
    if isinstance(issuer_public, ec.EllipticCurvePublicKey):
        issuer_public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(issuer_public, rsa.RSAPublicKey):
        issuer_public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                             cert.signature_hash_algorithm)  # type: ignore[arg-type]
    else:
        issuer_public.verify(cert.signature, cert.tbs_certificate_bytes)


def ocsp_status(cert: Certificate) -> str:
    """Ask the OCSP responder (django-ca's view, in-process) and check the signed answer against the DB."""
    leaf, issuer = cert.pub.loaded, cert.ca.pub.loaded
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    response = Client().post(f"/ocsp/{cert.ca.serial}/cert/", request.public_bytes(serialization.Encoding.DER),
                             content_type="application/ocsp-request")
    answer = ocsp.load_der_ocsp_response(response.content)
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"OCSP for {cert.serial}: {answer.response_status.name}")
    responder = answer.certificates[0]
    _verify_signed_by(responder, issuer.public_key())  # delegate certified by the CA
    public = responder.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm))
    elif isinstance(public, rsa.RSAPublicKey):
        public.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(),
                      answer.signature_hash_algorithm)  # type: ignore[arg-type]
    status = answer.certificate_status.name.lower()
    if status != ("revoked" if cert.revoked else "good"):
        raise RuntimeError(f"OCSP for {cert.serial} says {status}, database says revoked={cert.revoked}")
    return status


def verify(serials: list[str] | None = None) -> dict[str, Any]:
    """Every CA key signs; OCSP answers (signed, matching the database) for the oldest, newest and latest
    revoked certificates, plus ``serials``."""
    result: dict[str, Any] = {"ok": False, "cas": {}, "ocsp": {}, "checked_at": datetime.now(tz=UTC).isoformat()}
    for ca in CertificateAuthority.objects.filter(name__in=hierarchy.NAMES):
        hierarchy.signature_check(ca)
        result["cas"][ca.name] = "signs"
    missing = sorted(set(hierarchy.NAMES) - set(result["cas"]))
    if missing:
        result["error"] = f"CAs missing: {missing}"
        return result
    hierarchy.maintain()  # renews an OCSP delegate/CRL that expired while the backup was in storage
    qs = Certificate.objects.select_related("ca").filter(autogenerated=False)
    picks = {c.pk: c for c in (qs.order_by("created").first(), qs.order_by("-created").first(),
                               qs.filter(revoked=True).order_by("-revoked_date").first()) if c is not None}
    for serial in serials or []:
        cert = qs.get(serial=serial.replace(":", "").upper())
        picks[cert.pk] = cert
    for cert in picks.values():
        result["ocsp"][cert.serial] = ocsp_status(cert)
    result["ok"] = True
    return result
