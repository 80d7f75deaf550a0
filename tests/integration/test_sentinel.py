"""Redis Sentinel for real: a primary, a replica and a sentinel, each a `redis-server`.

The worker, the producer, the CLI and the result backend get only the sentinel's address
(`REDIS_URL=sentinel://...`, `REDIS_SENTINEL_MASTER`), and every one of them must end up
on the primary the sentinel names: the jobs and queue keys are written there (and reach
the replica by replication only), the worker's consumer connection is there, the audit
scripts run there, and nothing talks to the replica but replication.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.core.settings import load_settings
from cancelq.store.audit import audit_store
from cancelq.store.keys import FIELDS
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import Query
from producers.cli import main
from producers.dev.local_redis import free_port
from producers.enqueue import submit
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for, worker_env

pytestmark = pytest.mark.integration  # no skip: without redis-server it fails, saying why

MASTER = "cancelq-primary"


@dataclass
class SentinelSetup:
    primary_port: int
    replica_port: int
    sentinel_port: int
    primary: redis.Redis
    replica: redis.Redis

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0"


def _server(args: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{args[0]} on port {port} exited")
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_for(answers, timeout=10)
    client.close()
    return process


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    ports = [free_port() for _ in range(3)]
    primary_port, replica_port, sentinel_port = ports
    processes: list[subprocess.Popen[bytes]] = []
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--maxmemory-policy", "noeviction"]
    try:
        for name, port, extra in (
            ("primary", primary_port, []),
            ("replica", replica_port, ["--replicaof", "127.0.0.1", str(primary_port)]),
        ):
            directory = tmp_path / name
            directory.mkdir()
            processes.append(_server(
                ["redis-server", "--port", str(port), "--dir", str(directory), *common, *extra],
                port))
        primary = redis.Redis(port=primary_port, decode_responses=True)
        replica = redis.Redis(port=replica_port, decode_responses=True)
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up", timeout=10)

        config = tmp_path / "sentinel.conf"  # sentinel rewrites its config: a file of ours
        config.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 5000\n"
        )
        processes.append(_server(["redis-server", str(config), "--sentinel"], sentinel_port))
        watcher = redis.Redis(port=sentinel_port, decode_responses=True)

        def sees_both() -> bool:
            state: dict[str, Any] = watcher.sentinel_master(MASTER)  # type: ignore[assignment]
            return "s_down" not in state["flags"] and int(state["num-slaves"]) >= 1

        wait_for(sees_both, timeout=15, interval=0.2)
        watcher.close()
        yield SentinelSetup(primary_port, replica_port, sentinel_port, primary, replica)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _clients(client: redis.Redis) -> list[dict[str, str]]:
    return [dict(c) for c in client.client_list()]


def test_every_part_follows_the_primary_the_sentinel_names(
    sentinel: SentinelSetup, start_worker: WorkerFactory, simulator: Simulator,
    redis_url: str,
) -> None:
    env = {"REDIS_URL": sentinel.url, "REDIS_SENTINEL_MASTER": MASTER}
    settings = load_settings(redis_url=sentinel.url, redis_sentinel_master=MASTER)
    store = audit_store(settings)
    pool = store.redis.connection_pool
    assert pool.get_master_address() == ("127.0.0.1", sentinel.primary_port)  # type: ignore[attr-defined]

    case = str(uuid.uuid4())
    events = [str(uuid.uuid4()) for _ in range(5)]
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in events])

    start_worker(**env)
    job_ids = [
        submit(CancelRequest.parse(case_id=case, event_id=e, run_id="sentinel"),
               store=store).job_id
        for e in events[:4]
    ]
    via_cli = CliRunner().invoke(main, ["enqueue", case, events[4], "--json"], env=env)
    assert via_cli.exit_code == 0, via_cli.output
    job_ids.append(json.loads(via_cli.stdout)["job_id"])

    wait_for(lambda: store.counters().get("outcome:cancelled") == 5, timeout=30)
    assert {r.state for r in store.query(Query(limit=10))} == {State.SETTLED}

    primary, replica = sentinel.primary, sentinel.replica
    # the records and the broker's keys are on the primary ...
    for job_id in job_ids:
        assert primary.hget(f"c360:job:{job_id}", FIELDS["outcome"]) == "cancelled"
    assert primary.exists(f"_kombu.binding.{REALTIME_QUEUE}")
    # ... and on the replica only because it replicates the primary
    assert replica.info("replication")["role"] == "slave"
    wait_for(lambda: all(replica.hget(f"c360:job:{j}", FIELDS["outcome"]) == "cancelled"
                         for j in job_ids), timeout=10)

    # the worker consumes from the primary; nobody but replication talks to the replica
    primary_cmds = {c["cmd"] for c in _clients(primary)}
    assert "brpop" in primary_cmds, primary_cmds  # the broker consumer (kombu's BRPOP)
    replica_cmds = {c["cmd"] for c in _clients(replica) if c.get("flags") != "M"}
    assert not replica_cmds & {"brpop", "evalsha", "eval", "lpush", "hset"}, replica_cmds
    scripts_run = primary.info("commandstats")
    assert scripts_run.get("cmdstat_evalsha", {}).get("calls", 0) > 0  # the audit's Lua
    assert "cmdstat_evalsha" not in replica.info("commandstats")

    # the result backend resolves the same primary through celery's sentinel backend
    probe = "cancelq:sentinel-probe"
    code = (
        "from worker.celery import app\n"
        "backend = app.backend\n"
        f"backend.set({probe!r}, 'from-the-backend')\n"
        "print(type(backend).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env=worker_env(redis_url, simulator.url, **env),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SentinelBackend"
    assert primary.get(probe) == "from-the-backend"
    store.redis.close()
