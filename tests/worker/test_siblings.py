"""worker/siblings.py without processes: the sibling's command line."""

from __future__ import annotations

from worker.siblings import _is_worker_command, sibling_argv


def test_sibling_gets_its_own_node_name_and_no_pidfile() -> None:
    argv = ["-A", "worker", "worker", "-l", "info", "-n", "w0@%h", "--pidfile", "/run/w.pid",
            "--without-gossip", "--statedb=/x", "-D"]
    assert sibling_argv(argv, "w0@box", 2) == [
        "-A", "worker", "worker", "-l", "info", "--without-gossip", "-n", "w0-s2@box"]


def test_sibling_of_an_unnamed_worker() -> None:
    assert sibling_argv(["-A", "worker", "worker"], "celery@box", 1)[-2:] == [
        "-n", "celery-s1@box"]


def test_only_a_celery_worker_command_line_is_repeated() -> None:
    assert _is_worker_command(["/venv/bin/celery", "-A", "worker", "worker"])
    assert _is_worker_command(["/py/celery/__main__.py", "-A", "worker", "worker", "-l", "info"])
    assert not _is_worker_command(["/venv/bin/celery", "-A", "worker", "beat"])
    assert not _is_worker_command(["pytest", "worker"])
