"""Fixtures for tests against the loopback OpenStack test cloud (scripts/testcloud).

``testcloud`` (session): makes sure the cloud answers and none of its daemons died (else runs the
idempotent ``scripts/testcloud/up.sh``), points openstacksdk at its clouds.yaml for the session (``OS_CLIENT_CONFIG_FILE``,
``OS_CLOUD=testcloud``) and returns that file's path. ``os_conn``: an ``openstack.connection.Connection``
as the test cloud's admin. ``cleanup``: a per-test list of undo callables, run in reverse order.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import openstack
import openstack.connection
import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "scripts" / "testcloud" / "up.sh"
CLOUD = "testcloud"
# every API the fixture starts; any answer (even 401) means the daemon is up
HEALTH = {
    "keystone": "http://127.0.0.1:5000/v3",
    "swift": "http://127.0.0.1:8080/healthcheck",
    "glance": "http://127.0.0.1:9292/",
    "placement": "http://127.0.0.1:8778/",
    "neutron": "http://127.0.0.1:9696/",
    "nova": "http://127.0.0.1:8774/",
}


def state_dir() -> Path:
    return Path(os.environ.get("GOVCLOUD_TESTCLOUD_DIR", "/var/lib/govcloud-testcloud"))


def not_answering() -> list[str]:
    down = []
    for name, url in HEALTH.items():
        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError:
            pass  # an HTTP error status is still an answer
        except OSError:
            down.append(name)
    return down


def dead_daemons() -> list[str]:
    """Daemons up.sh recorded (pids/NAME.pid) that are no longer running."""
    dead = []
    for pidfile in sorted((state_dir() / "pids").glob("*.pid")):
        try:
            os.kill(int(pidfile.read_text().strip() or 0), 0)
        except ProcessLookupError:
            dead.append(pidfile.stem)
        except (PermissionError, ValueError, OSError):
            pass  # another user's process is alive; a garbled file is up.sh's business
    return dead


def unique(prefix: str = "tc") -> str:
    """A name no other run uses: tc-<6 hex>."""
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def testcloud() -> Iterator[Path]:
    clouds = state_dir() / "clouds.yaml"
    down = not_answering() + dead_daemons()
    if down or not clouds.is_file():
        if os.geteuid() != 0:
            pytest.fail(f"the OpenStack test cloud is not running ({', '.join(down) or 'no clouds.yaml'}) and "
                        f"starting it needs root: run `sudo make testcloud` first", pytrace=False)
        proc = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0 or not clouds.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            pytest.fail(f"scripts/testcloud/up.sh exited {proc.returncode}; the OpenStack test cloud did not "
                        f"start (logs in {state_dir() / 'logs'}):\n{tail}", pytrace=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        mp.setenv("OS_CLOUD", CLOUD)
        yield clouds


@pytest.fixture(scope="session")
def os_conn(testcloud: Path) -> Iterator[openstack.connection.Connection]:
    conn = openstack.connect(cloud=CLOUD)
    yield conn
    conn.close()


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], object]]]:
    """Append undo callables while creating things; they run in reverse order, all of them, even if
    one fails (the first failure is raised after the rest ran)."""
    undo: list[Callable[[], object]] = []
    yield undo
    errors: list[BaseException] = []
    for fn in reversed(undo):
        try:
            fn()
        except Exception as exc:  # keep cleaning, report after
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session", autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Stack files and state of the tests' throwaway stacks go to CI's state dir, or a temporary one."""
    if "GOVCLOUD_STATE_DIR" not in os.environ:
        os.environ["GOVCLOUD_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    Path(os.environ["GOVCLOUD_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
