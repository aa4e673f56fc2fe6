"""Converge time of N container hosts and the idempotent re-run, beside an Ansible ping + one task per role.

Starts N podman containers as hosts (systemd, sshd; 3 control plane nodes and N-3 workers by default),
then times, in the same run and through the same ansible-runner wrapper and ansible.cfg:
  converge:  ``site.yml`` without the ``kubernetes`` role (no kubeadm in containers): common, ca_trust,
             container_runtime (containerd from this machine's Debian mirror) and etcd_backup (etcd tools
             from an HTTP artifact mirror on the controller) — the first run, then the no-change re-run;
  baseline:  on the same hosts as the same user with become: ``ping`` plus one trivial task per role (a stat).
Issue 9's goal: the no-change re-run on 5 hosts in at most 1.5x the baseline. The re-run and the baseline
are measured ``--rounds`` times, interleaved (the machine is shared), and the medians compared.

    .venv/bin/python bench/hosts_converge.py [--hosts 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests/integration/hosts"))

from containerhosts import (  # noqa: E402
    GATEWAY,
    MIRROR_VARS,
    artifact_mirror,
    connection_vars,
    host_image,
    hosts_file,
    model,
    pem,
    self_signed_ca,
    start_hosts,
)

from infra.hosts import build_inventory  # noqa: E402
from infra.hosts.runner import PLAYBOOKS, RunResult, run_playbook  # noqa: E402

BASELINE = """\
---
- name: Baseline (ping and one trivial task per role)
  hosts: k8s_cluster
  become: true
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Common
      ansible.builtin.stat:
        path: /etc/ssh/sshd_config.d/05-govcloud-hardening.conf
    - name: Ca trust
      ansible.builtin.stat:
        path: /usr/local/share/ca-certificates/govcloud
    - name: Container runtime
      ansible.builtin.stat:
        path: /etc/containerd/config.toml
    - name: Etcd backup
      ansible.builtin.stat:
        path: /usr/local/sbin/govcloud-etcd-backup
      when: inventory_hostname in groups['control_plane']
"""


def task_count(pdd: Path) -> int:
    """Tasks the run started (from ansible-runner's job events), to read the ratio by."""
    import json

    return sum(json.loads(f.read_text()).get("event") == "playbook_on_task_start"
               for f in pdd.glob("artifacts/*/job_events/*.json"))


LOADS: list[float] = []  # the 1-minute load average around every timed run (the machine is shared)


def breakdown(pdd: Path) -> list[tuple[float, str]]:
    """(wall seconds, what) per task of a run, from its job events: the start of one to the start of the next."""
    import datetime
    import json

    events = sorted((json.loads(f.read_text()) for f in pdd.glob("artifacts/*/job_events/*.json")),
                    key=lambda e: e["counter"])
    marks = [(datetime.datetime.fromisoformat(e["created"]), e["event"], (e.get("event_data") or {}))
             for e in events if e["event"] in ("playbook_on_start", "playbook_on_play_start", "playbook_on_task_start",
                                               "playbook_on_stats")]
    out = []
    for (at, kind, data), (then, _, _) in itertools.pairwise(marks):
        what = {"playbook_on_start": "(start)", "playbook_on_play_start": f"play {data.get('play')}"}.get(
            kind, f"{data.get('role') or '-'}: {data.get('task')}")
        out.append(((then - at).total_seconds(), what))
    return out


def timed(label: str, run: callable) -> tuple[float, RunResult]:  # type: ignore[valid-type]
    LOADS.append(os.getloadavg()[0])
    start = time.perf_counter()
    result = run()
    took = time.perf_counter() - start
    LOADS.append(os.getloadavg()[0])
    if not result.ok:
        raise SystemExit(f"{label} failed: " + "; ".join(f.line() for f in result.failures))
    return took, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    control_plane = 3 if args.hosts >= 5 else 1
    with tempfile.TemporaryDirectory(prefix="govcloud-bench-hosts-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "ssh").mkdir()
        fleet = start_hosts(host_image(tmp), args.hosts, "bench", tmp / "ssh")
        try:
            with artifact_mirror(tmp / "artifacts") as mirror:
                inventory = build_inventory(model(fleet.pub), hosts=hosts_file(
                    tmp / "hosts", fleet.hosts[:control_plane], fleet.hosts[control_plane:])).write(tmp / "inventory.yml")
                ca = self_signed_ca("govcloud bench root")
                common = {
                    **MIRROR_VARS, **mirror,
                    "common_firewall_extra_rules": [
                        {"proto": "tcp", "ports": "22", "sources": [f"{GATEWAY}/32"], "comment": "bench controller"}],
                    "ca_trust_certificates": [{"name": "govcloud-bench-root", "pem": pem(ca[0])}],
                    "etcd_backup_restic_password": "bench",
                }

                def converge(user: str, n: int) -> RunResult:
                    return run_playbook("site.yml", inventory, skip_tags="kubernetes", limit="k8s_cluster",
                                        private_data_dir=tmp / f"run-{n}",
                                        extravars={**connection_vars(fleet, user), **common})

                baseline_dir = tmp / "baseline"
                baseline_dir.mkdir()
                (baseline_dir / "baseline.yml").write_text(BASELINE, encoding="utf-8")
                shutil.copy(PLAYBOOKS / "ansible.cfg", baseline_dir / "ansible.cfg")

                def baseline(n: int) -> RunResult:
                    return run_playbook("baseline.yml", inventory, playbooks_dir=baseline_dir,
                                        private_data_dir=tmp / f"base-{n}", extravars=connection_vars(fleet, "govcloud"))

                first_s, first = timed("first converge", lambda: converge("debian", 0))
                reruns, bases = [], []
                for n in range(1, args.rounds + 1):
                    took, again = timed("re-run", lambda n=n: converge("govcloud", n))  # type: ignore[misc]
                    if again.changed:
                        raise SystemExit(f"re-run {n} changed {again.changed} things: not idempotent")
                    reruns.append(took)
                    bases.append(timed("baseline", lambda n=n: baseline(n))[0])  # type: ignore[misc]
                tasks = (task_count(tmp / "run-1"), task_count(tmp / "base-1"))
                steps = {"re-run": breakdown(tmp / "run-1"), "baseline": breakdown(tmp / "base-1")}
        finally:
            fleet.remove()
    rerun, base = statistics.median(reruns), statistics.median(bases)
    ratio = rerun / base
    print(f"hosts: {args.hosts} ({control_plane} control plane, {args.hosts - control_plane} workers)")
    print(f"first converge:      {first_s:7.1f} s  (changed {first.changed})")
    print(f"no-change re-run:    {rerun:7.1f} s  median of {', '.join(f'{r:.1f}' for r in reruns)}")
    print(f"baseline (ping + 1 task/role): {base:7.1f} s  median of {', '.join(f'{b:.1f}' for b in bases)}")
    print(f"ratio re-run/baseline: {ratio:.2f}x (goal <= 1.5x) {'OK' if ratio <= 1.5 else 'OVER'}")
    print(f"load average (1 min) around the runs: {min(LOADS):.1f}-{max(LOADS):.1f}")
    print(f"tasks run: re-run {tasks[0]}, baseline {tasks[1]}; per task: re-run {rerun / tasks[0]:.2f} s, "
          f"baseline {base / tasks[1]:.2f} s ({rerun / tasks[0] / (base / tasks[1]):.2f}x)")
    for name, spent in steps.items():
        print(f"{name} (round 1) by task, wall s: " + "; ".join(f"{what} {s:.2f}" for s, what in spent if s >= 0.05))


if __name__ == "__main__":
    main()
