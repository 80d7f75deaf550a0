"""`cancelq archive migrate` and `cancelq archive run`, on a real Redis and PostgreSQL:
what they print (the password never), and one line for every failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner, Result

from cancelq.archive.archive import Archive
from cancelq.store.audit import AuditStore
from producers.cli import main
from tests.archive.test_archiver import settle_jobs
from tests.conftest import ROOT


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def with_password(url: str) -> str:
    return url.replace("postgres@", "postgres:s3cret-pw@")  # trust auth: any password works


def test_migrate_creates_the_schema_once_and_never_prints_the_password(pg_url: str) -> None:
    env = {"ARCHIVE_URL": with_password(pg_url)}
    first = cli(env, "archive", "migrate")
    assert first.exit_code == 0, first.output
    assert "schema none -> 0002" in first.output and "postgres:***@" in first.output
    again = cli(env, "archive", "migrate", "--json")
    assert json.loads(again.output)["before"] == "0002"
    assert "s3cret" not in first.output + again.output


def test_migrate_without_a_database_is_one_line_exit_1(pg_url: str) -> None:
    result = CliRunner().invoke(main, ["archive", "migrate"],
                                env={"ARCHIVE_URL": with_password(pg_url) + "_missing"})
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "does not exist: create it" in line and "s3cret" not in line


def test_run_archives_what_is_pending_and_refuses_an_unmigrated_archive(
    real_store: AuditStore, redis_url: str, pg_url: str
) -> None:
    job_ids = settle_jobs(real_store, 3)
    env = {"REDIS_URL": redis_url, "ARCHIVE_URL": pg_url, "KEY_PREFIX": real_store.keys.prefix}
    refused = CliRunner().invoke(main, ["archive", "run"], env=env)
    assert refused.exit_code == 1 and "run `cancelq archive migrate`" in refused.output
    assert cli(env, "archive", "migrate").exit_code == 0
    done = cli(env, "archive", "run")
    assert done.exit_code == 0 and "archived 3 jobs; 0 still pending" in done.output
    archive = Archive(pg_url)
    assert [r.job_id for r in archive.get_many(job_ids)] == job_ids
    archive.close()


def test_the_cli_loads_sqlalchemy_and_alembic_only_when_an_archive_is_used() -> None:
    """About half a second of every `cancelq` command otherwise (measured)."""
    probe = ("import sys; from producers.cli import main; "
             "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    assert out == "[]"


def test_readers_without_an_archive_never_import_sqlalchemy(redis_url: str) -> None:
    """`status`, `audit`, `run` and `dlq list` read through the archive only when
    ARCHIVE_URL is set; without it they cost no SQLAlchemy import."""
    probe = ("import sys; from click.testing import CliRunner; from producers.cli import main; "
             "codes = [CliRunner().invoke(main, args).exit_code for args in "
             "(['dlq', 'list', '--json'], ['audit', '--json'], ['run', 'nope'])]; "
             "print(codes, 'sqlalchemy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVE_URL"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={**env, "REDIS_URL": redis_url}).stdout
    assert out.strip() == "[0, 0, 1] False"
