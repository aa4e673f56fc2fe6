"""Backups to Swift beside a local restic repository, and the orphan sweep of a 20-server environment.

Needs the loopback test cloud (`make testcloud`). In the same run:
  backup:  restic backup of the same 256 MB into a local directory (baseline) and into Swift on the test
           cloud (the stack's container, credentials from clouds.yaml); then a full read back (`restic dump`)
           of each. The ratios are the object store's overhead.
  sweep:   baseline = deleting 20 bare servers straight through the API and waiting until they are gone;
           then `sweep` of an environment of 20 servers (bastion, 1 control plane, 18 workers) with its
           ports, networks, subnets, router, security groups, floating IP and containers.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_MB = 256
SERVERS = 20


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_backup(conn, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    from infra.ops.openstack_api import auth_env
    from infra.ops.restic import Restic

    data = workdir / "data.bin"
    with data.open("wb") as fh:
        for _ in range(DATA_MB):
            fh.write(os.urandom(1 << 20))  # incompressible and never deduplicated: the worst case for both
    container = f"govcloud-bench-{secrets.token_hex(3)}-backups"
    conn.object_store.create_container(name=container)
    password = secrets.token_urlsafe(24)
    repos = {"local": Restic(str(workdir / "repo"), password),
             "swift": Restic(f"swift:{container}:/restic", password, auth_env(conn))}
    results: dict[str, tuple[float, float]] = {}
    try:
        for kind, repo in repos.items():
            repo.init_if_needed()
            with data.open("rb") as fh:
                up = timed(lambda fh=fh, repo=repo: repo.backup_stdin("data.bin", fh, ["bench"]))
            snap = repo.snapshots(["bench"])[-1]
            with open(os.devnull, "wb") as sink:
                down = timed(lambda sink=sink, repo=repo, snap=snap: repo.dump(snap.id, "data.bin", sink))
            results[kind] = (up, down)
    finally:
        for obj in list(conn.object_store.objects(container)):
            conn.object_store.delete_object(obj, container=container)
        conn.object_store.delete_container(container)
    (lb, lr), (sb, sr) = results["local"], results["swift"]
    print(f"backup  {DATA_MB} MB: local {DATA_MB / lb:6.1f} MB/s ({lb:.1f}s)   swift {DATA_MB / sb:6.1f} MB/s "
          f"({sb:.1f}s)   swift/local time ratio {sb / lb:.2f}")
    print(f"restore {DATA_MB} MB: local {DATA_MB / lr:6.1f} MB/s ({lr:.1f}s)   swift {DATA_MB / sr:6.1f} MB/s "
          f"({sr:.1f}s)   swift/local time ratio {sr / lr:.2f}")


def bench_sweep(conn) -> None:  # type: ignore[no-untyped-def]
    from infra.ops.sweep import sweep
    from tests.testcloud.cloudenv import build, cloud_stack

    flavor = min(conn.compute.flavors(), key=lambda f: (f.vcpus, f.ram))
    image = next(iter(conn.image.images()))
    public = conn.network.find_network("public", ignore_missing=False)
    net = conn.network.create_network(name=f"bench-bare-{secrets.token_hex(2)}")
    conn.network.create_subnet(network_id=net.id, cidr="192.168.77.0/24", ip_version=4, enable_dhcp=False)
    bare = [conn.compute.create_server(name=f"bench-bare-{i}", flavor_id=flavor.id, image_id=image.id,
                                       networks=[{"uuid": net.id}]) for i in range(SERVERS)]
    for s in bare:
        conn.compute.wait_for_server(s, status="ACTIVE", wait=300)

    def delete_bare() -> None:
        for s in bare:
            conn.compute.delete_server(s)
        for s in bare:
            conn.compute.wait_for_delete(s, wait=300)

    baseline = timed(delete_bare)
    conn.network.delete_network(net)
    del public

    model = cloud_stack(conn, prefix="bench", workers=SERVERS - 2)
    try:
        built = timed(lambda: build(conn, model))
        report = None

        def run() -> None:
            nonlocal report
            report = sweep(conn, model.name, lambda _: None)

        swept = timed(run)
        assert report is not None and report.clean, report
        print(f"sweep   {SERVERS} servers + {len(report.deleted) - SERVERS} other resources: {swept:.1f}s   "
              f"baseline (delete {SERVERS} bare servers) {baseline:.1f}s   ratio {swept / baseline:.2f}   "
              f"(building the environment took {built:.1f}s)")
    finally:
        sweep(conn, model.name, lambda _: None)
        (Path(os.environ["GOVCLOUD_STATE_DIR"]) / "envs" / f"Pulumi.{model.name}.yaml").unlink(missing_ok=True)


def main() -> None:
    os.environ.setdefault("GOVCLOUD_STATE_DIR", tempfile.mkdtemp(prefix="bench-cloud-"))
    testcloud = Path(os.environ.get("GOVCLOUD_TESTCLOUD_DIR", "/var/lib/govcloud-testcloud"))
    os.environ.setdefault("OS_CLIENT_CONFIG_FILE", str(testcloud / "clouds.yaml"))
    from infra.ops.openstack_api import connect

    conn = connect(cloud="testcloud", region="RegionOne")
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        bench_backup(conn, Path(tmp))
    bench_sweep(conn)


if __name__ == "__main__":
    main()
