"""Environment lifecycle overhead: `env create`/`env destroy` beside `up`/`down --purge` of the same stack.

Both sides start from built images (a warm-up `up` builds them), on the same machine in the same run, so the
ratios are the overhead the environment machinery adds. Goals (issue 12): create <= 1.2x up; destroy <= 10 s.
"""

from __future__ import annotations

import secrets

from harness import govcloud, stack_file, state_dir


def main() -> None:
    envs = state_dir("bench-env-")
    plain = f"benchbase-{secrets.token_hex(2)}"
    stack_file(envs, plain, 39000)
    try:
        govcloud("up", "-s", plain)  # warm-up: images built, caches warm
        govcloud("down", "-s", plain, "--purge")
        up = govcloud("up", "-s", plain)
        down = govcloud("down", "-s", plain, "--purge")
        env = f"bench-{secrets.token_hex(2)}"
        create = govcloud("env", "create", env, "--from", "ci", "--ttl", "30m")
        destroy = govcloud("env", "destroy", env)
    finally:
        (envs / f"Pulumi.{plain}.yaml").unlink(missing_ok=True)
    print(f"up (baseline)      {up:6.1f} s")
    print(f"env create         {create:6.1f} s   ratio {create / up:4.2f}x   (goal <= 1.2x)")
    print(f"down --purge       {down:6.1f} s")
    print(f"env destroy        {destroy:6.1f} s   ratio {destroy / down:4.2f}x   (goal: destroy <= 10 s)")


if __name__ == "__main__":
    main()
