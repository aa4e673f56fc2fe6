"""pytest fixtures for component tests: a real PostgreSQL 15 server (Debian's binaries) per session.

``pg_server`` starts one throwaway cluster per test session on a Unix socket; ``pg_dsn`` gives each test
its own fresh database, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path(os.environ.get("GOVCLOUD_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PgServer:
    socket_dir: Path
    port: int

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user=postgres"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 binaries not found in {PG_BIN}: run scripts/bootstrap-host.sh")
    root = Path(tempfile.mkdtemp(prefix="govcloud-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; run the throwaway server as nobody
        shutil.chown(root, "nobody")
        shutil.chown(sock, "nobody")
        run_as = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    subprocess.run(
        [*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--locale=C.UTF-8", "--no-sync"],
        check=True, capture_output=True,
    )
    port = _free_port()
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l", str(root / "log"), "start"],
        check=True, capture_output=True,
    )
    try:
        yield PgServer(sock, port)
    finally:
        subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_dsn(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database for one test; PG* variables point at it, as the env contract does in containers."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    for key, value in {"PGHOST": str(pg_server.socket_dir), "PGPORT": str(pg_server.port), "PGDATABASE": name,
                       "PGUSER": "postgres"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    yield pg_server.dsn(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
