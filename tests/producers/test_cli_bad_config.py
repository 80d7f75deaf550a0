"""Issue 11 at the command line: every bad REDIS_URL is one line naming it, never a hang or
a traceback; config errors exit 2, a Redis that does not answer exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from producers.dev.local_redis import free_port
from tests.conftest import ROOT
from tests.fakeservers import not_redis

JOB = str(uuid.uuid4())


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("REDIS_", "CARE360_", "CV_API_KEY", "KEY_PREFIX"))}
    return subprocess.run(
        [sys.executable, "-c", "from producers.cli import main; main()", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo", "expected redis://"),
        ("http://127.0.0.1:8080/", "expected redis://"),
        ("redis://127.0.0.1:abc/0", "port must be a number"),
        ("redis://:pw-cli@127.0.0.1:6379/x", "database must be a number"),
    ],
)
def test_bad_redis_url_is_one_line_exit_2(url: str, says: str) -> None:
    done = cli("status", JOB, REDIS_URL=url)
    assert done.returncode == 2
    line = one_line(done)
    assert line.startswith("cancelq: configuration error: REDIS_URL: ") and says in line
    assert "pw-cli" not in line


@pytest.mark.parametrize("command", [["enqueue", JOB, JOB], ["stats"], ["dlq", "list"]])
def test_every_command_checks_redis_url(command: list[str]) -> None:
    done = cli(*command, REDIS_URL="foo")
    assert done.returncode == 2
    assert one_line(done).startswith("cancelq: configuration error: REDIS_URL: ")


def test_an_http_port_is_refused_in_one_line_exit_2() -> None:
    with not_redis("http") as port:
        done = cli("status", JOB, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 2
    assert "did not answer as Redis" in one_line(done)


def test_a_silent_server_fails_in_one_line_not_a_hang() -> None:
    with not_redis("silent") as port:
        done = cli("status", JOB, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 2  # a configuration error: that address is not a Redis
    assert "no answer from" in one_line(done)


def test_rediss_against_plain_fails_in_one_line() -> None:
    with not_redis("http") as port:
        done = cli("runs", REDIS_URL=f"rediss://127.0.0.1:{port}/0")
    assert done.returncode == 2  # documented: an address that cannot be Redis is exit 2
    assert one_line(done).startswith("cancelq: configuration error: REDIS_URL: ")


@pytest.mark.integration
def test_rediss_against_a_real_plain_redis_fails_in_one_line(redis_url: str) -> None:
    """The issue's hang: TLS to a plain Redis waited on a read timeout, retried, forever."""
    done = cli("status", JOB, REDIS_URL=redis_url.replace("redis://", "rediss://", 1))
    assert done.returncode == 2  # issue 20: was 1, "cannot reach" twice; the docs say 2
    line = one_line(done)
    assert line.startswith("cancelq: configuration error: REDIS_URL: TLS ") and "rediss://" in line
    assert line.count("cannot reach") == 0


def test_an_unreachable_redis_says_cannot_reach_once_exit_1() -> None:
    """docs/cli.md: Redis unreachable is exit 1 ("the operation failed"), in one line."""
    done = cli("status", JOB, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith("cancelq: REDIS_URL: cannot reach redis://127.0.0.1:")
    assert line.count("cannot reach") == 1


def test_a_closed_port_masks_the_password() -> None:
    done = cli("status", JOB, REDIS_URL=f"redis://:pw-closed@127.0.0.1:{free_port()}/0")
    assert done.returncode == 1
    line = one_line(done)
    assert "pw-closed" not in line and "redis://:***@" in line


def test_sentinel_errors_are_one_line_without_the_password() -> None:
    done = cli("status", JOB, REDIS_URL=f"sentinel://:pw-s@127.0.0.1:{free_port()}/0",
               REDIS_SENTINEL_MASTER="mymaster")
    assert done.returncode == 1
    assert "pw-s" not in one_line(done)


@pytest.mark.parametrize("url", [
    # issue 16: a `;` in a Sentinel password cut the URL in two, printed `'redis://:S3cr3t'`
    "sentinel://:S3cr3t;Tail@127.0.0.1:26379;redis://:S3cr3t;Tail@127.0.0.1:6379",
    "sentinel://:S3cr3t;Tail@:26379;sentinel://:S3cr3t;Tail@127.0.0.1:26379",
    "redis://:S3cr3t/Tail@127.0.0.1:6379/x",
    "redis://:S3cr3t%#Tail",
])
def test_a_config_error_shows_no_fragment_of_a_hostile_password(url: str) -> None:
    done = cli("status", JOB, REDIS_URL=url, REDIS_SENTINEL_MASTER="mymaster")
    assert done.returncode == 2
    line = one_line(done)
    assert line.startswith("cancelq: configuration error: REDIS_URL: ")
    assert "S3cr3t" not in line and "Tail" not in line, line


@pytest.mark.integration
def test_a_database_that_does_not_exist_is_exit_2(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    done = cli("status", JOB, REDIS_URL=f"{base}/99")
    assert done.returncode == 2
    assert "REDIS_URL: no such database" in one_line(done)


@pytest.mark.parametrize("url", ["foo", "http://10.0.0.1:8360"])
def test_bad_care360_base_url_is_one_line(url: str) -> None:
    done = cli("bulk", "-", "--dry-run", CARE360_BASE_URL=url)
    assert done.returncode == 2
    assert one_line(done).startswith("cancelq: configuration error: CARE360_BASE_URL: ")
