"""Portal search and service-page latency beside a static file served by the same server, over real HTTP.

    .venv/bin/python bench/portal_search.py [--duration 10] [--connections 50] [--workers 2] [--search memory]
                                            [--repeat 3] [--json]

A throwaway PostgreSQL 15 (the test fixture's) with the full seeded catalog (4,246 services), the portal as it
runs on a stack (``python -m portal``: uvicorn, ``--workers`` processes) on a local port, and Debian's ``wrk``
(C, epoll; ``bench/portal_wrk.lua`` cycles through the paths and reports percentiles) keeping ``--connections``
keep-alive connections busy for ``--duration`` seconds per scenario, after an untimed warm-up of each:

- ``static``: the portal's stylesheet from the same server (baseline: the server's floor),
- ``pk``: ``GET /api/services/{id}`` (a primary-key lookup through the same stack),
- ``search``: ``GET /api/services?q=...`` over a mix of Arabic and English queries (``QUERIES``),
- ``page``: the server-rendered service page ``GET /services/{id}`` (500 published services).

Prints p50/p99 latency and requests/s per scenario and their ratios to ``static``, the CPU each request cost in
the portal's processes, in PostgreSQL and in wrk itself (all share the machine's cores: on 2 cores the load
generator and the database take their part of what the server could use), and whether the issue's goal (search
p99 <= 50 ms at 50 concurrent clients) was met. ``--search sql`` measures the SQL search instead of the
in-memory index; ``--repeat`` runs the scenarios several times (machines are noisy) and prints each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "components" / "portal"), str(ROOT / "components" / "common")]

import httpx  # noqa: E402
import psycopg  # noqa: E402
from govcloud_common import db, testing  # noqa: E402
from portal.seed import seed  # noqa: E402

QUERIES = ["passport", "جواز سفر", "احوال", "birth certificate", "شهادة ولادة", "tax clearance", "رخصة بناء",
           "driving licence", "ترخيص صيدلية", "renewal", "تجديد", "electricity subscription", "إخراج قيد عائلي",
           "import licence", "الاستعلام", "health certificate"]
GOAL_P99_MS = 50.0
SCENARIOS = ("static", "pk", "search", "page")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the portal's workers; the database's backends)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(p, 0.0) for p, t in after.items())


def wrk(base: str, paths: Path, seconds: int, connections: int, threads: int) -> dict[str, float]:
    lua = ROOT / "bench" / "portal_wrk.lua"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), base]
    out = subprocess.run(cmd, env={**os.environ, "PATHS": str(paths)}, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK "))
    return json.loads(line[4:])  # type: ignore[no-any-return]


def scenario(base: str, paths: Path, args: argparse.Namespace, portal_pid: int, pg_pid: int) -> dict[str, float]:
    wrk(base, paths, args.warmup, args.connections, args.threads)  # untimed: connections, caches, plans
    portal0, pg0 = cpu_seconds(tree(portal_pid)), cpu_seconds(tree(pg_pid))
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = wrk(base, paths, args.duration, args.connections, args.threads)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    portal_cpu = cpu_delta(portal0, cpu_seconds(tree(portal_pid)))
    pg_cpu = cpu_delta(pg0, cpu_seconds(tree(pg_pid)))
    wrk_cpu = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    n = max(1, int(r["requests"]))
    return {"p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000, "rps": r["requests"] / (r["duration_us"] / 1e6), "requests": n,
            "errors": int(r["errors"]) + int(r["non2xx"]),
            "portal_cpu_ms": portal_cpu / n * 1000, "pg_cpu_ms": pg_cpu / n * 1000, "wrk_cpu_ms": wrk_cpu / n * 1000}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--warmup", type=int, default=2, help="untimed seconds before each scenario")
    parser.add_argument("--connections", type=int, default=50, help="concurrent clients (keep-alive connections)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="portal uvicorn workers (setting workers)")
    parser.add_argument("--search", choices=["memory", "sql"], default="memory", help="portal setting search")
    parser.add_argument("--repeat", type=int, default=1, help="run all scenarios this many times")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk (scripts/bootstrap-host.sh installs it)")
    fixture = getattr(testing.pg_server, "__wrapped__", testing.pg_server)
    gen = fixture()
    server = next(gen)
    proc = None
    runs: list[dict[str, dict[str, float]]] = []
    try:
        name = "bench_portal_" + uuid.uuid4().hex[:6]
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            backend = Path(f"/proc/{conn.info.backend_pid}/stat").read_text()
            pg_pid = int(backend.rsplit(")", 1)[1].split()[1])  # its parent: the postmaster
        dsn = server.dsn(name)
        db.migrate("portal", conninfo=dsn)
        seeded = seed(dsn)
        with psycopg.connect(dsn) as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM services WHERE status = 'published' ORDER BY md5(id) LIMIT 500")]
        work = Path(tempfile.mkdtemp(prefix="portal-bench-"))
        plans = {
            "static": ["/static/portal.css"],
            "pk": [f"/api/services/{i}" for i in ids],
            "search": [f"/api/services?q={quote(q)}" for q in QUERIES],
            "page": [f"/services/{i}" for i in ids],
        }
        for scen, urls in plans.items():
            (work / f"{scen}.txt").write_text("\n".join(urls) + "\n")
        port = free_port()
        env = {**os.environ, "PGHOST": str(server.socket_dir), "PGPORT": str(server.port), "PGDATABASE": name,
               "PGUSER": "postgres", "GOVCLOUD_PORT_HTTP": str(port), "GOVCLOUD_BIND": "127.0.0.1",
               "GOVCLOUD_SECRET_ADMIN_TOKEN": uuid.uuid4().hex, "GOVCLOUD_LOG_LEVEL": "WARNING",
               "GOVCLOUD_SETTING_WORKERS": str(args.workers), "GOVCLOUD_SETTING_SEARCH": args.search,
               "PYTHONPATH": os.pathsep.join(str(ROOT / "components" / c) for c in ("common", "portal"))}
        proc = subprocess.Popen([sys.executable, "-m", "portal"], env=env, stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # readiness is polled, as the platform's probes do
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("portal did not become ready")
            time.sleep(0.1)
        for _ in range(args.repeat):
            runs.append({s: scenario(base, work / f"{s}.txt", args, proc.pid, pg_pid) for s in SCENARIOS})
        shutil.rmtree(work, ignore_errors=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        gen.close()
    for results in runs:
        static = results["static"]
        for r in results.values():
            r["p50_x_static"], r["p99_x_static"] = r["p50_ms"] / static["p50_ms"], r["p99_ms"] / static["p99_ms"]
            r["rps_x_static"] = r["rps"] / static["rps"]
    met = [run["search"]["p99_ms"] <= GOAL_P99_MS for run in runs]
    if args.json:
        print(json.dumps({"catalog": seeded, "connections": args.connections, "duration": args.duration,
                          "workers": args.workers, "search": args.search, "cpus": os.cpu_count(), "runs": runs,
                          "goal_met": met}, indent=1))
        return 0
    print(f"portal, {seeded['services']} services ({seeded['published']} published), {args.workers} workers, "
          f"search {args.search}; wrk {args.connections} connections x {args.duration} s per scenario; "
          f"{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
    for n, results in enumerate(runs, 1):
        print(f"run {n}/{len(runs)}  {'scenario':8} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7} {'p50/st':>7} "
              f"{'p99/st':>7} {'rps/st':>7} {'portal':>7} {'pg':>6} {'wrk':>6} {'errors':>6}  (CPU ms per request)")
        for scen, r in results.items():
            print(f"{'':9} {scen:8} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['rps']:7.0f} {r['p50_x_static']:7.2f} "
                  f"{r['p99_x_static']:7.2f} {r['rps_x_static']:7.2f} {r['portal_cpu_ms']:7.2f} "
                  f"{r['pg_cpu_ms']:6.2f} {r['wrk_cpu_ms']:6.2f} {r['errors']:6d}")
    p99s = [run["search"]["p99_ms"] for run in runs]
    print(f"goal: search p99 <= {GOAL_P99_MS:.0f} ms at {args.connections} clients: met in {sum(met)} of {len(met)} "
          f"runs (search p99 {min(p99s):.1f}-{max(p99s):.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
