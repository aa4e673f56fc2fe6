"""Certificates issued per second and OCSP responses per second by the CA, beside the physical limits.

    .venv/bin/python bench/ca_issue.py [--n 300] [--workers 2] [--seconds 10]

Uses PG* from the environment when PGHOST is set, else a throwaway PostgreSQL 15 (Debian binaries). Prints,
in the same run:

* issuance: raw cryptography signing of an equivalent certificate (the baseline), django-ca issuance through
  the Python API with our policy, through our HTTP API in-process, and through the real server
  (``python -m ca serve``, WORKERS processes, concurrent httpx clients) — each as a ratio to the baseline;
* OCSP on the real server, loaded by ``wrk`` (C, one thread, keep-alive; Debian package ``wrk``) so the client
  does not eat the server's cores: pre-produced answers for distinct certificates (POST, a Lua script rotating
  DER requests), the live-signed answer to a request with a nonce (django-ca signs each), ``/healthz`` through
  the whole FastAPI stack, and a static response from the same server (``/issuer/<ca>.der``, the baseline) —
  beside ``openssl speed ecdsap256`` signatures/s on one core (the physical limit for signing anything live).

Client, server and PostgreSQL share the same 2 cores.
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
    parser.add_argument("--n", type=int, default=300, help="certificates per issuance measure")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    args = parser.parse_args()
    n = args.n
    if not shutil.which("wrk"):
        print("wrk not found: scripts/bootstrap-host.sh installs it (apt-get install wrk)", file=sys.stderr)
        return 2

    pg = None
    if not os.environ.get("PGHOST"):
        pg = throwaway_pg()
    os.environ.setdefault("GOVCLOUD_DOMAIN", "gov.bench")
    os.environ.setdefault("GOVCLOUD_SECRET_KEY_PASSPHRASE", secrets.token_urlsafe(24))
    os.environ.setdefault("GOVCLOUD_SECRET_ADMIN_TOKEN", secrets.token_urlsafe(24))
    os.environ["DJANGO_SETTINGS_MODULE"] = "ca.settings"
    try:
        return run(n, args.workers, args.seconds)
    finally:
        if pg:
            subprocess.run([*pg[1], str(PG_BIN / "pg_ctl"), "-D", str(pg[0] / "data"), "-m", "immediate", "stop"],
                           capture_output=True)
            shutil.rmtree(pg[0], ignore_errors=True)


def run(n: int, workers: int, seconds: int) -> int:
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
    for i in range(4 * n):
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
        csr = csrs[n + i] if i < n else csrs[3 * n + i - n]
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        with issue_context("tls-server"):
            Certificate.objects.create_cert(ca, use_options(ca), csr, profile=profiles["tls-server"],
                                            subject=csr.subject, extensions=[san],
                                            not_after=datetime.now(tz=UTC) + timedelta(days=90))

    headers = {"Authorization": f"Bearer {os.environ['GOVCLOUD_SECRET_ADMIN_TOKEN']}"}
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in csrs[2 * n:3 * n]]
    issued: list[str] = []
    with TestClient(build(maintenance_interval=0)) as client:
        def http_api(i: int) -> None:
            r = client.post("/api/v1/certificates", json={"profile": "tls-server", "csr": pems[i]}, headers=headers)
            assert r.status_code == 201, r.text
            issued.append(r.json()["certificate"])

        baseline = rate(n, raw)
        # the same with and without pre-producing OCSP responses at issuance, in alternating chunks of 50
        from ca import ocsp as ca_ocsp
        from django_ca.signals import post_issue_cert

        timed = {True: 0.0, False: 0.0}
        for start in range(0, 2 * n, 50):
            hook = (start // 50) % 2 == 0
            if not hook:
                post_issue_cert.disconnect(dispatch_uid="govcloud-ca-ocsp-issue")
            t0 = time.perf_counter()
            for i in range(start, min(start + 50, 2 * n)):
                python_api(i)
            if hook:
                ca_ocsp.producer.flush()  # its signing and storing count against issuance
            timed[hook] += time.perf_counter() - t0
            post_issue_cert.connect(ca_ocsp.on_issue, dispatch_uid="govcloud-ca-ocsp-issue")
        py_rate, py_bare = n / timed[True], n / timed[False]
        http_rate = rate(n, http_api)

    issuer = ca.pub.loaded
    requests = [ocsp.OCSPRequestBuilder().add_certificate(x509.load_pem_x509_certificate(p.encode()), issuer,
                                                          hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
                for p in issued]
    nonce_request = (ocsp.OCSPRequestBuilder().add_certificate(x509.load_pem_x509_certificate(issued[0].encode()),
                                                               issuer, hashes.SHA1())
                     .add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False).build()
                     .public_bytes(serialization.Encoding.DER))
    served = served_rates(n, pems_extra=[c.public_bytes(serialization.Encoding.PEM).decode() for c in csrs[:n]],
                          ca_serial=ca.serial, ocsp_requests=requests, nonce_request=nonce_request, headers=headers,
                          workers=workers, seconds=seconds)

    print(f"{'issuance':60} {'per s':>9} {'x baseline':>10}")
    print(f"{'baseline: raw cryptography cert signing (P-256, 1 core)':60} {baseline:9.0f} {1:10.2f}")
    print(f"{'django-ca Python API + policy + PostgreSQL + OCSP pre-produced':60} {py_rate:9.0f} "
          f"{py_rate / baseline:10.2f}")
    print(f"{'  the same without pre-producing OCSP (alternating chunks)':60} {py_bare:9.0f} "
          f"{py_bare / baseline:10.2f}")
    print(f"{'our HTTP API (in-process ASGI, sequential)':60} {http_rate:9.0f} {http_rate / baseline:10.2f}")
    label = f"served HTTP issuance ({workers} workers, 16 concurrent)"
    print(f"{label:60} {served['issue']:9.0f} {served['issue'] / baseline:10.2f}")
    static = served["static"]
    print(f"\n{'OCSP on the served CA (wrk -t1 -c32, ' + str(seconds) + ' s each)':60} {'per s':>9} {'x static':>10}")
    print(f"{'openssl speed ecdsap256 sign (1 core: live-signing limit)':60} {openssl_sign:9.0f} "
          f"{openssl_sign / static:10.2f}")
    rows = [("baseline: static bytes, same server (GET /issuer/<ca>.der)", static),
            (f"pre-produced OCSP, {len(requests)} distinct certs (POST)", served["ocsp"]),
            ("live-signed OCSP (request with a nonce, django-ca)", served["live"]),
            ("GET /healthz through the whole FastAPI stack", served["healthz"])]
    for label, value in rows:
        print(f"{label:60} {value:9.0f} {value / static:10.2f}")
    print(f"n={n} per issuance measure; {workers} server workers; goals: 100 certs/s, 1000 OCSP/s; "
          "client, server and PostgreSQL share 2 cores")
    return 0


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b:03d}" for b in data) + '"'


def wrk(url: str, seconds: int, script: str | None = None, connections: int = 32) -> float:
    """Requests/s reported by wrk (one client thread, 10 s request timeout); refuses runs with errors or non-2xx
    answers."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            cmd[1:1] = ["-s", lua.name]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if "Non-2xx" in out or (errors and any(int(x) for x in errors.groups())):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(out)
    return float(m.group(1))


def served_rates(n: int, pems_extra: list[str], ca_serial: str, ocsp_requests: list[bytes], nonce_request: bytes,
                 headers: dict[str, str], workers: int, seconds: int, concurrency: int = 16) -> dict[str, float]:
    """The real server (python -m ca serve, uvicorn, WORKERS processes): issuance under concurrent httpx clients,
    OCSP and static answers under wrk."""
    import asyncio
    import socket

    import httpx
    import psycopg
    from cryptography import x509
    from cryptography.x509 import ocsp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GOVCLOUD_PORT_HTTP": str(port), "GOVCLOUD_SETTING_WORKERS": str(workers),
           "GOVCLOUD_SETTING_MAINTENANCE_SECONDS": "0", "PYTHONPATH": os.pathsep.join(sys.path[:2])}
    base = f"http://127.0.0.1:{port}"
    with psycopg.connect("", autocommit=True) as conn:  # ready when every worker announced its OCSP listener
        conn.execute("LISTEN govcloud_ca_ocsp_ack")
        proc = subprocess.Popen([sys.executable, "-m", "ca", "serve"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        ready: set[str] = set()
        deadline = time.monotonic() + 120
        while len(ready) < workers and proc.poll() is None and time.monotonic() < deadline:
            for note in conn.notifies(timeout=1.0, stop_after=1):
                kind, _, rest = note.payload.partition(":")
                if kind == "listening" and rest.endswith(f":{proc.pid}"):
                    ready.add(rest)
    try:
        if len(ready) < workers:
            raise RuntimeError("the CA server did not start")

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

        result = {"issue": asyncio.run(load(issue))}
        path = f"/ocsp/{ca_serial}/cert/"
        with httpx.Client(base_url=base) as c:  # every request of the OCSP script answers "good", signed
            for der in ocsp_requests:
                r = c.post(path, content=der, headers={"Content-Type": "application/ocsp-request"})
                assert ocsp.load_der_ocsp_response(r.content).certificate_status == ocsp.OCSPCertStatus.GOOD
            live = ocsp.load_der_ocsp_response(c.post(path, content=nonce_request).content)
            assert live.certificate_status == ocsp.OCSPCertStatus.GOOD
            assert live.extensions.get_extension_for_class(x509.OCSPNonce)  # signed for this request
        post = (f"local bodies = {{{', '.join(_lua_string(d) for d in ocsp_requests)}}}\n"
                "local reqs, i = {}, 0\n"
                "function init(args)\n"
                "  for k, b in ipairs(bodies) do\n"
                f"    reqs[k] = wrk.format('POST', '{path}', {{['Content-Type'] = 'application/ocsp-request'}}, b)\n"
                "  end\nend\n"
                "function request()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n")
        nonce = (f"wrk.method = 'POST'\nwrk.body = {_lua_string(nonce_request)}\n"
                 "wrk.headers['Content-Type'] = 'application/ocsp-request'\n")
        wrk(base + path, 2, post)  # warm-up: every worker's memory holds the answers (production steady state)
        result["static"] = wrk(f"{base}/issuer/{ca_serial}.der", seconds)
        result["ocsp"] = wrk(base + path, seconds, post)
        result["live"] = wrk(base + path, seconds, nonce)
        result["healthz"] = wrk(base + "/healthz", seconds)
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
