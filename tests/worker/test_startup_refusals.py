"""Issue 11 for the Celery processes: the worker, beat and Flower refuse a bad setting with
one line and exit 2, never a traceback; Flower refuses to start open from any directory;
`celery inspect conf` has no password in it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from celery.worker.control import Panel

from producers.dev.local_redis import free_port
from tests.conftest import API_KEY, ROOT
from tests.fakeservers import not_redis
from worker.safe_conf import masked_table


def celery(*args: str, cwd: Path = ROOT, timeout: float = 90,
           extra: dict[str, str] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "CARE360_", "CV_API_KEY", "FLOWER_", "KEY_PREFIX"))}
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), "CV_API_KEY": API_KEY, **env, **(extra or {})},
    )


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert API_KEY not in output
    # (a root-run worker also gets Celery's own SecurityWarning: not ours, not a traceback)
    lines = [line for line in done.stderr.splitlines() if line.startswith("cancelq")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"REDIS_URL": "foo"}, "REDIS_URL: expected redis://"),
        ({"REDIS_URL": "redis://127.0.0.1:abc/0"}, "REDIS_URL: the port must be a number"),
        ({"CARE360_BASE_URL": "foo"}, "CARE360_BASE_URL: must be an http(s)://"),
        ({"CARE360_BASE_URL": "http://care360.internal"}, "CARE360_BASE_URL: plain http://"),
        ({"CV_API_KEY": ""}, "CV_API_KEY: required"),
    ],
)
def test_the_worker_refuses_bad_settings_in_one_line(env: dict[str, str], says: str) -> None:
    line = refusal(celery("worker", "--without-mingle", "--without-gossip", extra=env))
    assert says in line, line


@pytest.mark.parametrize("password", ["Head;Tail", "Head/Tail", "Head#Tail", "Head?Tail"])
def test_the_worker_refuses_a_password_kombu_would_cut(password: str) -> None:
    """Issue 16: kombu cut `redis://:Head;Tail@h` at the `;` and died with a traceback
    ending in `Port could not be cast to integer value as 'Head'`: a password fragment."""
    done = celery("worker", "--without-mingle", "--without-gossip",
                  extra={"REDIS_URL": f"redis://:{password}@127.0.0.1:{free_port()}/0"})
    line = refusal(done)
    assert "REDIS_URL: the user or password holds" in line and "percent-encode" in line
    assert "Head" not in done.stdout + done.stderr and "Tail" not in done.stdout + done.stderr


def test_the_worker_refuses_an_http_port_as_redis() -> None:
    with not_redis("http") as port:
        done = celery("worker", "--without-mingle", "--without-gossip",
                      REDIS_URL=f"redis://:pw-w@127.0.0.1:{port}/0")
    line = refusal(done)
    assert "REDIS_URL:" in line and "did not answer as Redis" in line and "pw-w" not in line


def test_the_worker_refuses_a_silent_server_within_ten_seconds() -> None:
    """Something that takes the connection and says nothing (the simulator's HTTP port did
    this) is not a Redis: one line and exit 2, not a worker that retries it forever."""
    with not_redis("silent") as port:
        done = celery("worker", "--without-mingle", "--without-gossip",
                      REDIS_URL=f"redis://127.0.0.1:{port}/0")
    line = refusal(done)
    assert "REDIS_URL:" in line and "not a Redis" in line


def test_a_worker_waiting_for_a_redis_that_is_down_is_quiet_and_stops_on_sigterm() -> None:
    """A Redis that is merely down (a refused port) is waited for, in a few lines, and a
    SIGTERM ends the worker well within compose's 30 s grace, with no traceback."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "CARE360_", "CV_API_KEY", "FLOWER_", "KEY_PREFIX"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--without-mingle",
         "--without-gossip", "-l", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "CV_API_KEY": API_KEY,
             "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    time.sleep(6)  # a few reconnect attempts (not a wait for a state: we want them to pass)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode is not None
    assert "Traceback" not in output, output
    assert API_KEY not in output
    assert len(output.splitlines()) < 80, output


def test_beat_refuses_an_http_port_as_redis(tmp_path: Path) -> None:
    with not_redis("http") as port:
        done = celery("beat", f"--pidfile={tmp_path / 'beat.pid'}",
                      REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert "did not answer as Redis" in refusal(done)


@pytest.mark.parametrize("env", [{}, {"FLOWER_BASIC_AUTH": ""}, {"FLOWER_BASIC_AUTH": "ops"}])
def test_flower_refuses_to_start_open_from_any_directory(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """`cd /tmp && celery -A worker flower`: no flowerconfig.py there, still refused."""
    done = celery("flower", f"--port={free_port()}", "--address=127.0.0.1",
                  cwd=tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", extra=env)
    line = refusal(done)
    assert "refusing to start" in line and "FLOWER_BASIC_AUTH" in line


def test_flower_auth_in_a_config_file_counts(tmp_path: Path) -> None:
    """Flower parses its options again after reading --conf: auth set only there is seen."""
    conf = tmp_path / "conf.py"
    conf.write_text("basic_auth = ['ops:from-the-file']\n")
    bad = tmp_path / "bad.py"
    bad.write_text("port = 1\n")
    done = celery("flower", f"--conf={bad}", f"--port={free_port()}", cwd=tmp_path,
                  REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert "refusing to start" in refusal(done)
    with pytest.raises(subprocess.TimeoutExpired):  # it starts (and would serve): no refusal
        celery("flower", f"--conf={conf}", f"--port={free_port()}", "--address=127.0.0.1",
               cwd=tmp_path, timeout=8, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")


def test_inspect_conf_has_no_password() -> None:
    import worker.celery  # noqa: F401  (installs the masked `conf` command)
    from worker.safe_conf import _conf

    assert Panel.data["conf"] is _conf and Panel.data["dump_conf"] is _conf
    app = Celery("t", set_as_current=False)
    app.conf.update(
        broker_url="redis://:pw-broker@h:6379/0",
        result_backend="redis://user:pw-backend@h:6379/0",
        redbeat_redis_url="sentinel://:pw-beat@s1:26379;sentinel://:pw-beat@s2:26379",
        redbeat_redis_options={"password": "pw-options", "sentinels": [["s1", 26379]]},
        broker_transport_options={"note": "see rediss://:pw-nested@h:6380/0"},
    )
    table = repr(masked_table(app)) + repr(masked_table(app, with_defaults=True))
    for secret in ("pw-broker", "pw-backend", "pw-beat", "pw-options", "pw-nested"):
        assert secret not in table, secret
    assert "h:6379/0" in table
