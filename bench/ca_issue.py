"""Certificates issued per second and OCSP responses per second by the CA, beside the physical limit.

    .venv/bin/python bench/ca_issue.py [--n 300]

Uses PG* from the environment when PGHOST is set, else a throwaway PostgreSQL 15 (Debian binaries). Prints,
in the same run: openssl speed (ECDSA P-256 sign/s, the CA's key type), raw cryptography signing of an
equivalent certificate (baseline), django-ca issuance through the Python API with our policy, the same through
our HTTP API (in-process ASGI), and OCSP answers through django-ca's responder — each as a ratio to baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "components" / "ca"), str(ROOT / "components" / "common")]
PG_BIN = Path(os.environ.get("GOVCLOUD_PG_BIN", "/usr/lib/postgresql/15/bin"))


def throwaway_pg() -> tuple[Path, list[str]]:
    root = Path(tempfile.mkdtemp(prefix="ca-bench-pg-"))
    sock = root / "sock"
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        shutil.chown(sock, "nobody")
        run_as = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True)
    opts = f"-k {sock} -p 5499 -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-o", opts, "-w", "-l",
                    str(root / "log"), "start"], check=True, capture_output=True)
    os.environ.update({"PGHOST": str(sock), "PGPORT": "5499", "PGUSER": "postgres", "PGDATABASE": "postgres"})
    return root, run_as


def rate(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    n = args.n

    pg = None
    if not os.environ.get("PGHOST"):
        pg = throwaway_pg()
    os.environ.setdefault("GOVCLOUD_DOMAIN", "gov.bench")
    os.environ.setdefault("GOVCLOUD_SECRET_KEY_PASSPHRASE", secrets.token_urlsafe(24))
    os.environ.setdefault("GOVCLOUD_SECRET_ADMIN_TOKEN", secrets.token_urlsafe(24))
    os.environ["DJANGO_SETTINGS_MODULE"] = "ca.settings"
    try:
        return run(n)
    finally:
        if pg:
            subprocess.run([*pg[1], str(PG_BIN / "pg_ctl"), "-D", str(pg[0] / "data"), "-m", "immediate", "stop"],
                           capture_output=True)
            shutil.rmtree(pg[0], ignore_errors=True)


def run(n: int) -> int:
    import django

    django.setup()
    from ca.__main__ import migrate
    from ca.asgi import build
    from ca.hierarchy import ensure_hierarchy, use_options
    from ca.policy import issue_context
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from django_ca.models import Certificate, CertificateAuthority
    from django_ca.profiles import profiles
    from fastapi.testclient import TestClient

    migrate()
    ensure_hierarchy()
    ca = CertificateAuthority.objects.get(name="platform")
    ca_key = ca.key_backend.get_key(ca, use_options(ca))
    domain = os.environ["GOVCLOUD_DOMAIN"]
    csrs = []
    for i in range(3 * n):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"host{i}.{domain}"
        csrs.append(x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                    .sign(key, hashes.SHA256()))

    speed = subprocess.run(["openssl", "speed", "-seconds", "2", "ecdsap256"], capture_output=True, text=True)
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)", speed.stdout)
    openssl_sign = float(m.group(1)) if m else float("nan")

    def raw(i: int) -> None:  # the same certificate content, signed directly: no database, no policy
        csr = csrs[i]
        now = datetime.now(tz=UTC)
        (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.pub.loaded.subject)
         .public_key(csr.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + timedelta(days=90))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
         .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False)
         .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]

    def python_api(i: int) -> None:
        csr = csrs[n + i]
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        with issue_context("tls-server"):
            Certificate.objects.create_cert(ca, use_options(ca), csr, profile=profiles["tls-server"],
                                            subject=csr.subject, extensions=[san],
                                            not_after=datetime.now(tz=UTC) + timedelta(days=90))

    client = TestClient(build(maintenance_interval=0))
    headers = {"Authorization": f"Bearer {os.environ['GOVCLOUD_SECRET_ADMIN_TOKEN']}"}
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in csrs[2 * n:]]
    issued: list[str] = []

    def http_api(i: int) -> None:
        r = client.post("/api/v1/certificates", json={"profile": "tls-server", "csr": pems[i]}, headers=headers)
        assert r.status_code == 201, r.text
        issued.append(r.json()["certificate"])

    baseline = rate(n, raw)
    py_rate = rate(n, python_api)
    http_rate = rate(n, http_api)

    issuer = ca.pub.loaded
    requests = [ocsp.OCSPRequestBuilder().add_certificate(x509.load_pem_x509_certificate(p.encode()), issuer,
                                                          hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
                for p in issued]
    path = f"/ocsp/{ca.serial}/cert/"

    def ocsp_answer(i: int) -> None:
        r = client.post(path, content=requests[i % len(requests)], headers={"Content-Type": "application/ocsp-request"})
        assert ocsp.load_der_ocsp_response(r.content).certificate_status == ocsp.OCSPCertStatus.GOOD

    ocsp_rate = rate(n, ocsp_answer)
    from django.test import Client

    view_client = Client()

    def ocsp_view(i: int) -> None:  # django-ca's responder without any HTTP stack: its own capacity
        r = view_client.post(path, requests[i % len(requests)], content_type="application/ocsp-request")
        assert ocsp.load_der_ocsp_response(r.content).certificate_status == ocsp.OCSPCertStatus.GOOD

    view_rate = rate(n, ocsp_view)

    served = served_rates(n, pems_extra=[c.public_bytes(serialization.Encoding.PEM).decode() for c in csrs[:n]],
                          ocsp_path=path, ocsp_requests=requests, headers=headers)

    print(f"{'measure':52} {'per s':>9} {'x baseline':>10}")
    print(f"{'openssl speed ecdsap256 sign (1 core, physical limit)':52} {openssl_sign:9.0f} "
          f"{openssl_sign / baseline:10.2f}")
    print(f"{'baseline: raw cryptography cert signing (P-256)':52} {baseline:9.0f} {1:10.2f}")
    print(f"{'django-ca Python API + policy + PostgreSQL':52} {py_rate:9.0f} {py_rate / baseline:10.2f}")
    print(f"{'our HTTP API (in-process ASGI, sequential)':52} {http_rate:9.0f} {http_rate / baseline:10.2f}")
    print(f"{'OCSP responses, live-signed (in-process, sequential)':52} {ocsp_rate:9.0f} {ocsp_rate / baseline:10.2f}")
    print(f"{'OCSP view alone (django.test.Client, no HTTP stack)':52} {view_rate:9.0f} {view_rate / baseline:10.2f}")
    for label, value in served.items():
        print(f"{label:52} {value:9.0f} {value / baseline:10.2f}")
    print(f"n={n} per measure; goals: 100 certs/s, 1000 OCSP/s; 2 cores shared by server, client and PostgreSQL")
    return 0


def served_rates(n: int, pems_extra: list[str], ocsp_path: str, ocsp_requests: list[bytes],
                 headers: dict[str, str], workers: int = 2, concurrency: int = 16) -> dict[str, float]:
    """The real server (python -m ca serve, uvicorn, WORKERS processes) under concurrent httpx load."""
    import asyncio
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GOVCLOUD_PORT_HTTP": str(port), "GOVCLOUD_SETTING_WORKERS": str(workers),
           "PYTHONPATH": os.pathsep.join(sys.path[:2])}
    proc = subprocess.Popen([sys.executable, "-m", "ca", "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness poll of a child process (bench only, bounded)
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the CA server did not become ready")
            time.sleep(0.2)

        async def load(make) -> float:  # type: ignore[no-untyped-def]
            async with httpx.AsyncClient(base_url=base, timeout=30,
                                         limits=httpx.Limits(max_connections=concurrency)) as client:
                queue = iter(range(n))

                async def worker() -> None:
                    for i in queue:
                        r = await make(client, i)
                        assert r.status_code in (200, 201), r.text

                start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return n / (time.perf_counter() - start)

        def issue(client, i):  # type: ignore[no-untyped-def]
            return client.post("/api/v1/certificates", json={"profile": "tls-server", "csr": pems_extra[i]},
                               headers=headers)

        def answer(client, i):  # type: ignore[no-untyped-def]
            return client.post(ocsp_path, content=ocsp_requests[i % len(ocsp_requests)],
                               headers={"Content-Type": "application/ocsp-request"})

        def probe(client, i):  # type: ignore[no-untyped-def]
            return client.get("/healthz")

        return {f"served /healthz, harness ceiling ({workers} workers)": asyncio.run(load(probe)),
                f"served HTTP issuance ({workers} workers, {concurrency} concurrent)": asyncio.run(load(issue)),
                f"served OCSP, distinct certs: live-signed ({workers} workers)": asyncio.run(load(answer)),
                f"served OCSP, same certs again: cached ({workers} workers)": asyncio.run(load(answer))}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
