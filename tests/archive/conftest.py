"""A real PostgreSQL for the archive tests: each test gets a database of its own, dropped
at the end.

PostgreSQL 15 answers on 127.0.0.1:5432 (trust auth, user postgres) on the machines this
suite runs on, CI's included. Where nothing answers there, the session starts a private
cluster with `initdb` and `pg_ctl` on a free port in a temporary folder (as root, as the
`postgres` OS user), or fails in one line saying why it cannot. A fault test on SQLite
would prove nothing about the database the archive runs on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.database import make_engine

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SHARED = ("127.0.0.1", 5432)


def _answers(host: str, port: int) -> bool:
    try:
        with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres",
                             connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def private_cluster(folder: Path) -> tuple[str, int, Path]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"no PostgreSQL on {SHARED[0]}:{SHARED[1]} and no {PG_BIN}/initdb to "
                    "start one (apt-get install postgresql-15)")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                 "-A", "trust"]), check=True, capture_output=True)
    subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                                 str(folder / "log"), "-o", f"-p {port} -k {folder} "
                                 "-c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    return "127.0.0.1", port, data


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[str, int]]:
    """(host, port) of a PostgreSQL these tests may create databases on."""
    if _answers(*SHARED):
        yield SHARED
        return
    folder = Path(tempfile.mkdtemp(prefix="cancelq-pg-"))
    host, port, data = private_cluster(folder)
    yield host, port
    subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"]), check=False, capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def admin(server: tuple[str, int]) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=server[0], port=server[1], user="postgres",
                           dbname="postgres", autocommit=True)


@pytest.fixture
def pg_url(pg_server: tuple[str, int]) -> Iterator[str]:
    """The URL of an empty database made for this test alone."""
    name = f"cancelq_test_{uuid.uuid4().hex[:12]}"
    with admin(pg_server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@{pg_server[0]}:{pg_server[1]}/{name}"
    with admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_archive(pg_url: str) -> Iterator[Archive]:
    """A migrated archive on the test's own PostgreSQL database."""
    migrate.upgrade(make_engine(pg_url))
    archive = Archive(pg_url)
    yield archive
    archive.close()


@pytest.fixture
def sqlite_archive(tmp_path: Path) -> Iterator[Archive]:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    migrate.upgrade(make_engine(url))
    archive = Archive(url)
    yield archive
    archive.close()
