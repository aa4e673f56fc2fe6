"""Backup and restore drill on a realistic data volume, beside raw pg_dump/pg_restore of the same database.

Loads the portal database of a throwaway stack with 1 M feedback-sized rows, 1 M payment-sized rows and
100 k certificate-sized rows (plus the seeded catalog), then times, in the same run:
  baseline: pg_dump -Fc | pg_restore into a scratch database, inside the postgres container;
  govcloud: `govcloud backup` (one-snapshot dump + facts into restic, and the stack's state),
            `govcloud drill --beside -c portal` (restore beside the live data + facts verification: the
            component's RTO) and `govcloud drill` (a fresh throwaway stack: state restored, postgres up, the
            database restored and checked, the portal started on it, healthy; torn down: the stack's RTO, the
            drill's own measurement, with its steps).
Goals (issue 8): RTO <= 2 min and <= 1.5x the raw baseline.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

from harness import ROOT, govcloud, run, stack_file, state_dir

LOAD = """
CREATE TABLE bench_feedback AS SELECT g AS id, (g % 4246) AS service, md5(g::text) AS kind,
  repeat('citizen comment ', 8) || g AS body, now() - (g || ' seconds')::interval AS created
  FROM generate_series(1, 1000000) g;
CREATE TABLE bench_payments AS SELECT g AS id, 'ord-' || md5(g::text) AS order_id, (g % 90000) * 100 AS amount,
  'SYP' AS currency, 'paid' AS status, now() AS paid_at FROM generate_series(1, 1000000) g;
CREATE TABLE bench_certificates AS SELECT g AS serial, repeat(md5(g::text), 24) AS pem, now() AS not_after
  FROM generate_series(1, 100000) g;
"""


def main() -> None:
    envs = state_dir("bench-backup-")
    from infra.model import load_stack
    from infra.runtime.local import LocalRuntime

    name = f"benchbase-{secrets.token_hex(2)}"
    stack_file(envs, name, 38000, {c: {"enabled": False}
                                   for c in ("bodysystems", "nats", "ca", "switch", "bus", "payment")})
    try:
        govcloud("up", "-s", name)
        rt = LocalRuntime(load_stack(name))
        port = str(38000 + 18010)
        psql = ["psql", "-X", "-q", "-h", "/tmp", "-p", port, "-U", "postgres"]
        assert rt.exec("postgres", [*psql, "-d", "portal", "-c", LOAD]).returncode == 0
        size = rt.exec("postgres", [*psql, "-d", "portal", "-tAc",
                                    "SELECT pg_size_pretty(pg_database_size('portal'))"]).stdout.decode().strip()
        raw = (f"set -e; pg_dump -h /tmp -p {port} -U postgres -Fc -Z 1 portal > /tmp/raw.dump; "
               f"psql -X -q -h /tmp -p {port} -U postgres -c 'CREATE DATABASE raw_copy'; "
               f"pg_restore -h /tmp -p {port} -U postgres -d raw_copy /tmp/raw.dump; "
               f"psql -X -q -h /tmp -p {port} -U postgres -c 'DROP DATABASE raw_copy'; rm /tmp/raw.dump")
        start = time.perf_counter()
        assert rt.exec("postgres", ["bash", "-c", raw]).returncode == 0
        baseline = time.perf_counter() - start
        backup = govcloud("backup", "-s", name)
        drill = govcloud("drill", "-s", name, "--beside", "-c", "portal")
        fresh_total, out = run("drill", "-s", name, "--json")
        fresh = json.loads(out)
    finally:
        subprocess.run([sys.executable, "-m", "infra.cli", "down", "-s", name, "--purge"], cwd=ROOT,
                       capture_output=True, check=False)
        (envs / f"Pulumi.{name}.yaml").unlink(missing_ok=True)
    print(f"portal database with 2.1 M extra rows: {size}")
    print(f"raw pg_dump + pg_restore (baseline)   {baseline:6.1f} s")
    print(f"govcloud backup (dump+facts+restic)   {backup:6.1f} s   ratio {backup / baseline:4.2f}x")
    print(f"govcloud drill --beside = RTO (restore+verify) {drill:6.1f} s   ratio {drill / baseline:4.2f}x"
          f"   (goals: <= 120 s, <= 1.5x)")
    print(f"govcloud drill (fresh stack) RTO      {fresh['rto_s']:6.1f} s   ratio {fresh['rto_s'] / baseline:4.2f}x"
          f"   (whole run with teardown {fresh_total:.1f} s, {'verified' if fresh['ok'] else 'FAILED'})")
    print("  steps (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in fresh["phases"].items()))


if __name__ == "__main__":
    main()
