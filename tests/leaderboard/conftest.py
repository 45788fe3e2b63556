"""Fixtures for the leaderboard tests.

* ``pg_server`` (session): a real PostgreSQL server started with ``initdb`` + ``pg_ctl`` in a
  temp dir on a free loopback port (as the ``postgres`` system user when running as root).
  Binaries: ``$B3F_PG_BIN``, ``/usr/lib/postgresql/*/bin`` (newest first) or ``pg_ctl`` on
  PATH. Skips, with the reason, only when no server binary (or no psycopg2) exists.
* ``pg_url``: a fresh database on that server per test.
* ``store_url``: parametrised over ``sqlite`` and ``postgresql``.
* ``chromium``: a headless browser binary, or a skip with the reason.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # lb_fake (synthetic results), shared with lb_worker.py


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.name)) or (0,)


def find_pg_bindir() -> Path | None:
    candidates: list[Path] = []
    if os.environ.get("B3F_PG_BIN"):
        candidates.append(Path(os.environ["B3F_PG_BIN"]))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).resolve().parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file() and (c / "postgres").is_file():
            return c
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{database}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, postgres) under "
                    "$B3F_PG_BIN, /usr/lib/postgresql/*/bin or PATH; apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2-binary is the PostgreSQL driver; pip install psycopg2-binary")
    runas: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' system user to run the server")
        runas = ["runuser", "-u", "postgres", "--"]
    tmp = Path(tempfile.mkdtemp(prefix="b3f-pg-"))
    if owner is not None:
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    data, log = tmp / "data", tmp / "server.log"
    subprocess.run(
        [*runas, str(bindir / "initdb"), "-D", str(data), "-U", "b3f", "--auth=trust",
         "-E", "UTF8", "--no-locale", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )
    port = None
    for _ in range(3):  # the free port may be taken between probing and binding
        candidate = _free_port()
        opts = (f"-p {candidate} -c listen_addresses=127.0.0.1 -c unix_socket_directories={tmp} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        proc = subprocess.run(
            [*runas, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
             "-o", opts, "start"],
            capture_output=True, timeout=120,
        )
        if proc.returncode == 0:
            port = candidate
            break
    if port is None:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL from {bindir}: {text[-2000:]}")
    try:
        yield PgServer("127.0.0.1", port, "b3f")
    finally:
        subprocess.run([*runas, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"b3f_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_server.url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'leaderboard.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leaderboard.sqlite'}"
    return request.getfixturevalue("pg_url")


def find_chromium() -> str | None:
    if os.environ.get("B3F_CHROMIUM"):
        return os.environ["B3F_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no headless browser (chromium / google-chrome) on PATH or $B3F_CHROMIUM; "
                    "apt-get install chromium")
    return binary
