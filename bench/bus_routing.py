"""Requests per second through the bus, as a ratio to calling the provider directly, in the same run.

    .venv/bin/python bench/bus_routing.py [--seconds 8] [--concurrency 64]

Starts, on 127.0.0.1 ephemeral ports: a throwaway PostgreSQL 15, nats-server (JetStream), the bodysystems
simulator (``python -m bodysystems``) and the bus (``python -m bus``, its real entry point) with a throwaway PKI
(root + issuing CA, OCSP/CRL responder, bus server and bus-client certificates). Then measures, with the same
client (aiohttp, keep-alive), the civil registry's ``GET /persons/{id}``:

* direct: plain HTTP to the provider;
* routed: mutual TLS to the bus -> identity, access right, breaker, message log -> provider;
* latency at concurrency 1 (p50/p99) for both, and what the bus adds.

Everything shares the machine's cores (client, bus, provider, PostgreSQL, NATS), as the issue's 2-core target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "components" / "bus" / "tests"), str(ROOT / "components" / "common")]
PG_BIN = Path(os.environ.get("GOVCLOUD_PG_BIN", "/usr/lib/postgresql/15/bin"))
PATH_DIRECT = "/cra/population/persons/01010000001"
PATH_ROUTED = "/r1/cra/population/persons/persons/01010000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, deadline_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Bounded poll until ``url`` answers 200 (start-up of a child process; not used to order measurements)."""
    import httpx

    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            r = httpx.get(url, timeout=1)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:300]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready: {last}")


def throwaway_pg(root: Path) -> tuple[dict[str, str], list[str]]:
    sock = root / "sock"
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        shutil.chown(sock, "nobody")
        run_as = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True)
    port = free_port()
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-o", opts, "-w", "-l",
                    str(root / "log"), "start"], check=True, capture_output=True)
    return {"PGHOST": str(sock), "PGPORT": str(port), "PGUSER": "postgres", "PGDATABASE": "postgres"}, run_as


async def load(url: str, seconds: float, concurrency: int, ssl_ctx: ssl.SSLContext | None) -> tuple[int, int]:
    import aiohttp

    ok = errors = 0
    conn = aiohttp.TCPConnector(limit=concurrency, ssl=ssl_ctx if ssl_ctx else False)
    async with aiohttp.ClientSession(connector=conn) as session:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal ok, errors
            while time.perf_counter() < stop:
                async with session.get(url) as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, errors


async def latencies(url: str, n: int, ssl_ctx: ssl.SSLContext | None) -> list[float]:
    import aiohttp

    out: list[float] = []
    conn = aiohttp.TCPConnector(limit=1, ssl=ssl_ctx if ssl_ctx else False)
    async with aiohttp.ClientSession(connector=conn) as session:
        for _ in range(n + 20):
            t = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append(time.perf_counter() - t)
    return sorted(out[20:])


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-n", type=int, default=1000)
    args = ap.parse_args()

    from pki import build_pki

    work = Path(tempfile.mkdtemp(prefix="bus-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg_root = Path(tempfile.mkdtemp(prefix="bus-bench-pg-"))
    pg_env, run_as = throwaway_pg(pg_root)
    try:
        pki, responder = build_pki(work)
        nats_port, bs_port, http_port, mtls_port = (free_port() for _ in range(4))
        procs.append(subprocess.Popen(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(nats_port), "-js",
                                       "-sd", str(work / "nats")], stderr=subprocess.DEVNULL))
        pythonpath = os.pathsep.join(str(ROOT / "components" / c) for c in ("common", "bus", "bodysystems"))
        base = {**os.environ, "PYTHONPATH": pythonpath, "GOVCLOUD_BIND": "127.0.0.1", "GOVCLOUD_STACK": "bench"}
        procs.append(subprocess.Popen([sys.executable, "-m", "bodysystems"], stdout=subprocess.DEVNULL,
                                      env={**base, "GOVCLOUD_COMPONENT": "bodysystems",
                                           "GOVCLOUD_PORT_HTTP": str(bs_port)}))
        crt, key = pki.files["bus"]
        token = "bench-admin-token"
        bus = subprocess.Popen([sys.executable, "-m", "bus"], stdout=subprocess.DEVNULL, env={
            **base, **pg_env, "GOVCLOUD_COMPONENT": "bus", "GOVCLOUD_PORT_HTTP": str(http_port),
            "GOVCLOUD_PORT_MTLS": str(mtls_port), "GOVCLOUD_SECRET_ADMIN_TOKEN": token,
            "GOVCLOUD_DOMAIN": "gov.test", "GOVCLOUD_SETTING_NATS_URL": f"nats://127.0.0.1:{nats_port}",
            "GOVCLOUD_SETTING_TLS_CERT": str(crt), "GOVCLOUD_SETTING_TLS_KEY": str(key),
            "GOVCLOUD_SETTING_CA_BUNDLE": str(pki.ca_bundle)})
        procs.append(bus)
        bs_url, admin_url = f"http://127.0.0.1:{bs_port}", f"http://127.0.0.1:{http_port}"
        wait_http(f"{bs_url}/healthz")
        wait_http(f"{admin_url}/readyz", proc=bus)

        import httpx

        from conftest import register_members  # the tests' member set-up, over the admin API

        async def setup() -> None:
            async with httpx.AsyncClient(base_url=admin_url, headers={"authorization": f"Bearer {token}"}) as a:
                await register_members(a, bs_url)

        asyncio.run(setup())
        client_ctx = ssl.create_default_context(cafile=str(pki.ca_bundle))
        client_ctx.load_cert_chain(*pki.files["portal"])
        direct_url, routed_url = bs_url + PATH_DIRECT, f"https://127.0.0.1:{mtls_port}{PATH_ROUTED}"

        asyncio.run(load(direct_url, 1.0, args.concurrency, None))  # warm-up both paths
        asyncio.run(load(routed_url, 1.0, args.concurrency, client_ctx))
        d_ok, d_err = asyncio.run(load(direct_url, args.seconds, args.concurrency, None))
        r_ok, r_err = asyncio.run(load(routed_url, args.seconds, args.concurrency, client_ctx))
        d_lat = asyncio.run(latencies(direct_url, args.latency_n, None))
        r_lat = asyncio.run(latencies(routed_url, args.latency_n, client_ctx))
        direct_rps, routed_rps = d_ok / args.seconds, r_ok / args.seconds
        verify = httpx.get(f"{admin_url}/admin/log/verify", headers={"authorization": f"Bearer {token}"},
                           timeout=120).json()
        result = {
            "cores": os.cpu_count(), "concurrency": args.concurrency, "seconds": args.seconds,
            "direct_rps": round(direct_rps), "routed_rps": round(routed_rps),
            "routed_over_direct": round(routed_rps / direct_rps, 3), "errors": {"direct": d_err, "routed": r_err},
            "latency_ms": {"direct_p50": round(pct(d_lat, 0.5), 3), "direct_p99": round(pct(d_lat, 0.99), 3),
                           "routed_p50": round(pct(r_lat, 0.5), 3), "routed_p99": round(pct(r_lat, 0.99), 3),
                           "added_p50": round(pct(r_lat, 0.5) - pct(d_lat, 0.5), 3),
                           "added_p99": round(pct(r_lat, 0.99) - pct(d_lat, 0.99), 3)},
            "message_log": {"ok": verify["ok"], "records": sum(verify["records"].values())},
        }
        print(f"direct   {direct_rps:8.0f} req/s   p50 {result['latency_ms']['direct_p50']:.2f} ms   "
              f"p99 {result['latency_ms']['direct_p99']:.2f} ms")
        print(f"routed   {routed_rps:8.0f} req/s   p50 {result['latency_ms']['routed_p50']:.2f} ms   "
              f"p99 {result['latency_ms']['routed_p99']:.2f} ms   (mTLS + identity + rights + breaker + log)")
        print(f"ratio routed/direct = {result['routed_over_direct']:.3f}; bus adds "
              f"{result['latency_ms']['added_p50']:.2f} ms at p50, {result['latency_ms']['added_p99']:.2f} ms at p99")
        print(json.dumps(result))
        responder.shutdown()
        return 0
    finally:
        for p in reversed(procs):  # the bus first, while NATS and PostgreSQL are still there
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(pg_root / "data"), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
