"""Air-gapped install: bundle size, and `bundle install` + `up` with no network beside a normal online `up`.

The whole `ci` platform, in the same run on the same machine:

- baseline: `govcloud up` online, from the images already built in the host's podman store (a warm
  machine: nothing to build), then `down --purge`;
- air-gapped: `bundle install` into an **empty** podman store (every image from the bundle), then `up`
  inside a network namespace with only loopback, where netfilter counts every packet to any other
  address (must stay 0), then `down --purge`.

Ratio: (install + offline up) / online up. Also the bundle's size and the time to create and verify it.
`--host-packages` includes the host's and the cluster roles' .debs (downloads them: slower, bigger).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFFSET = 6500  # ports 24510.. (contract ports + offset)


def timed(*args: str, env: dict[str, str] | None = None, ns: str | None = None) -> float:
    from tests.integration.test_bundle import run

    start = time.perf_counter()
    proc = run(*args, env=env or dict(os.environ), ns=ns, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"govcloud {' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-400:]}")
    return time.perf_counter() - start


def main() -> None:
    if "GOVCLOUD_STATE_DIR" not in os.environ:
        os.environ["GOVCLOUD_STATE_DIR"] = tempfile.mkdtemp(prefix="bench-bundle-state-")
    from tests.integration.conftest import make_stack
    from tests.integration.test_bundle import isolate, outbound_attempts

    host_packages = "--host-packages" in sys.argv[1:]
    stack = make_stack("benchbndl", OFFSET)
    work = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    archive = work / "bundle.tar.zst"
    ns = f"govcloud-bench-{secrets.token_hex(3)}"
    store = work / "store"
    conf = work / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{store}/root"\nrunroot = "{store}/run"\n')
    offline_env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    try:
        create = timed("bundle", "create", "-s", stack, "-o", str(archive),
                       "--host-packages" if host_packages else "--no-host-packages")
        size = archive.stat().st_size
        verify = timed("bundle", "verify", str(archive))

        online_up = timed("up", "-s", stack)
        timed("down", "-s", stack, "--purge")

        install = timed("bundle", "install", str(archive), "--workdir", str(work / "unpacked"), env=offline_env)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        isolate(ns)
        offline_up = timed("up", "-s", stack, env=offline_env, ns=ns)
        sent = outbound_attempts(ns)
        if sent:
            raise SystemExit(f"the offline up sent packets outside loopback: {sent}")
    finally:
        from tests.integration.test_bundle import run

        run("down", "-s", stack, "--purge", env=offline_env)
        run("down", "-s", stack, "--purge", env=dict(os.environ))
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["podman", "--root", f"{store}/root", "--runroot", f"{store}/run", "rmi", "-a", "-f"],
                       capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)
        (Path(os.environ["GOVCLOUD_STATE_DIR"]) / "envs" / f"Pulumi.{stack}.yaml").unlink(missing_ok=True)
    offline = install + offline_up
    print(f"bundle ({'with' if host_packages else 'without'} .debs)  {size / 1e6:7.0f} MB   "
          f"create {create:5.1f} s   verify {verify:5.1f} s")
    print(f"online up (baseline, images built)  {online_up:6.1f} s")
    print(f"bundle install (empty store)        {install:6.1f} s")
    print(f"up in a loopback-only netns         {offline_up:6.1f} s   ratio {offline_up / online_up:4.2f}x   "
          "(0 packets outside loopback)")
    print(f"install + offline up                {offline:6.1f} s   ratio {offline / online_up:4.2f}x")


if __name__ == "__main__":
    main()
