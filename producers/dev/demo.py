"""The main job, end to end on one machine: simulator, worker, a mixed batch, the outcomes.

It starts every part as a real process (the simulator and a `celery -A worker worker`),
against the Redis at `REDIS_URL` if one answers (in database 15 and under a key prefix of
its own, so it never mixes with real work), else a private `redis-server`, else an embedded
Redis. Everything it started is stopped on the way out, even on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import redis
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.archiver import Archiver
from cancelq.archive.database import make_engine
from cancelq.core.clock import iso_utc
from cancelq.core.settings import load_settings
from cancelq.core.urls import mask_url
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.codec import decode_text
from cancelq.store.queues import Queues
from cancelq.store.records import JobRecord
from producers.cli.render import print_whole
from producers.dev.local_redis import LocalRedis, answers, ensure_redis
from producers.enqueue import enqueue_cancellation
from simulator.control import SimulatorControl, spawn_simulator

DEMO_KEY = "demo-key-not-a-secret"
DEMO_DB = 15
SETTLE_TIMEOUT_SECONDS = 90.0

console = Console(highlight=False)


@dataclass(frozen=True)
class Case:
    label: str
    case_id: str
    event_id: str
    expect: str


def _ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def build_batch(control: SimulatorControl) -> list[Case]:
    """A batch that exercises every row of the outcome table and the retry paths."""
    batch: list[Case] = []

    def event(label: str, expect: str, agent_name: str = "custom", cancelled: bool = False) -> Case:
        case_id, event_id = _ids()
        control.add_event(case_id, event_id, agent_name=agent_name, cancelled=cancelled)
        case = Case(label, case_id, event_id, expect)
        batch.append(case)
        return case

    for i in range(6):
        event(f"plain cancel #{i + 1}", "cancelled")
    event("already cancelled upstream", "already_cancelled", cancelled=True)
    event("not a custom event", "not_custom_event", agent_name="google")
    flaky = event("500, 500, then 200", "cancelled")
    control.script(flaky.event_id, [500, 500])
    throttled = event("429 with Retry-After: 1", "cancelled")
    control.script(throttled.event_id, [{"status": 429, "retry_after": 1}])
    lost = event("cancelled, but the answer was lost", "already_cancelled")
    control.script(lost.event_id, ["lost"])
    down = event("503 on every call", "retries_exhausted")
    control.script(down.event_id, [503] * 20)
    known_case = batch[0].case_id
    batch.append(Case("event that does not exist", known_case, str(uuid.uuid4()),
                      "event_not_found"))
    batch.append(Case("case that does not exist", *_ids(), "case_not_found"))
    return batch


@contextmanager
def _process(args: list[str], env: dict[str, str], name: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        _stop(process, name)


def _stop(process: subprocess.Popen[str], name: str) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            console.print(f"[yellow]{name} did not stop in 20 s; killed[/yellow]")
            process.kill()
            process.wait()


def _redis_for_demo(url: str) -> LocalRedis:
    if answers(url):
        base = url.rsplit("/", 1)[0] if re.search(r"/\d+$", url) else url.rstrip("/")
        return LocalRedis(url=f"{base}/{DEMO_DB}", kind="external")
    return ensure_redis(None)


#: Keys the demo leaves in a Redis it did not start expire after this (issue: ~80 keys stayed).
DEMO_KEYS_TTL = timedelta(days=1)
#: Besides its own prefix, what Celery and kombu write in the demo's database.
BROKER_KEY_PATTERNS = ("_kombu.*", "unacked*", "celery-task-meta-*")


def run_demo(*, jobs_timeout: float = SETTLE_TIMEOUT_SECONDS) -> int:
    """Start everything, run the batch, show it; 0 when every job ended as expected."""
    settings = load_settings()
    with ExitStack() as stack:
        local = stack.enter_context(_redis_for_demo(settings.redis_url))
        _say_redis(local)
        prefix = f"demo-{int(time.time())}-{os.getpid()}"
        store = audit_store(load_settings(REDIS_URL=local.url, KEY_PREFIX=prefix))
        if local.kind == "external":  # runs last, even on Ctrl-C or an error
            stack.callback(_expire_leftovers, store)
        env = _child_env(local.url, prefix)
        control = _start_simulator(stack, env)
        if control is None:
            return 1
        worker = _start_worker(stack, env)
        submitted = _submit(store, build_batch(control), prefix)
        records = _wait_settled(store, [job for _, job in submitted], jobs_timeout, worker)
        _show(submitted, records, store, control)
        _archive_and_read_back(store, [job for _, job in submitted],
                               stack.enter_context(tempfile.TemporaryDirectory()))
        wrong = [c for c, j in submitted if records.get(j) and records[j].outcome != c.expect]
        unsettled = [c for c, j in submitted if not (records.get(j) and records[j].state.is_final)]
        _say_goodbye(local, prefix)
    if unsettled or wrong:
        console.print(f"[red]{len(unsettled)} unsettled, {len(wrong)} unexpected outcomes[/red]")
        return 1
    console.print("[green]Every job ended in its expected, recorded outcome.[/green]")
    return 0


def _say_redis(local: LocalRedis) -> None:
    where = {
        "external": f"the Redis at REDIS_URL (database {DEMO_DB})",
        "redis-server": "a private redis-server on a free port",
        "embedded": "an embedded Redis (fakeredis; no redis-server installed)",
    }[local.kind]
    console.print(f"[bold]1. Redis[/bold]: {where}: {escape(mask_url(local.url))}")


def _child_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The simulator's and the worker's environment: ours, minus settings, plus the demo's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CANCEL_", "CARE360_", "CV_API_KEY", "CELERY_"))}
    env.update(
        REDIS_URL=redis_url,
        KEY_PREFIX=prefix,
        CV_API_KEY=DEMO_KEY,
        CANCEL_MAX_ATTEMPTS="4",
        CANCEL_RETRY_BASE_SECONDS="0.2",
        CANCEL_RETRY_MAX_SECONDS="2",
        CARE360_TIMEOUT_SECONDS="3",
        RETRY_SCHEDULER_INTERVAL_SECONDS="0.1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _start_simulator(stack: ExitStack, env: dict[str, str]) -> SimulatorControl | None:
    """The simulator as a child process; sets `CARE360_BASE_URL` in `env` to reach it."""
    try:
        sim, sim_url = spawn_simulator("--api-key", DEMO_KEY, "--latency-ms", "30", env=env)
    except RuntimeError as exc:
        console.print(Text(str(exc), style="red"))
        return None
    stack.callback(_stop, sim, "simulator")
    control = stack.enter_context(SimulatorControl(sim_url))
    control.wait_ready(10)
    console.print(f"[bold]2. Care360 simulator[/bold]: {sim_url} (30 ms latency)")
    env["CARE360_BASE_URL"] = sim_url
    return control


def _start_worker(stack: ExitStack, env: dict[str, str]) -> subprocess.Popen[str]:
    worker = stack.enter_context(_process(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "warning",
         "-c", "8", "-n", f"demo-{os.getpid()}@%h", "--without-mingle", "--without-gossip"],
        env, "worker"))
    console.print(f"[bold]3. Celery worker[/bold]: pid {worker.pid}, threads pool, 8 slots")
    return worker


def _submit(store: AuditStore, batch: list[Case], run_id: str) -> list[tuple[Case, str]]:
    """Enqueue the batch, then the first request again to show it comes back a duplicate."""
    submitted: list[tuple[Case, str]] = []
    for case in batch:
        result = enqueue_cancellation(case.case_id, case.event_id, store=store,
                                      requested_by="cancelq demo", run_id=run_id)
        submitted.append((case, result.job_id))
    dup = enqueue_cancellation(batch[0].case_id, batch[0].event_id, store=store,
                               requested_by="cancelq demo")
    console.print(f"[bold]4. Enqueued[/bold] {len(submitted)} jobs; the same request "
                  f"again came back as duplicate={dup.duplicate} (job {dup.job_id[:8]}…)")
    return submitted


def _archive_and_read_back(store: AuditStore, job_ids: list[str], folder: str) -> None:
    """What ARCHIVE_URL adds: the settled jobs copied to an archive (SQLite here, the same
    code as PostgreSQL), then one of them read back from it (docs/archive.md)."""
    url = f"sqlite:///{Path(folder) / 'archive.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    archive = Archive(url)
    try:
        Archiver(store, archive).drain()
        archived = archive.get_many(job_ids)
        console.print(f"[bold]6b. Archive[/bold]: {len(archived)} of {len(job_ids)} jobs "
                      f"archived to {url} (ARCHIVE_URL; PostgreSQL in production)")
        if archived:
            back = archived[0]
            console.print(Text(f"    read back from the archive: job {back.job_id[:8]}… "
                               f"{back.outcome}, {len(back.attempts)} attempt(s), settled "
                               f"{iso_utc(back.settled_at)}"))
    finally:
        archive.close()


def _say_goodbye(local: LocalRedis, prefix: str) -> None:
    if local.kind == "external":
        days = DEMO_KEYS_TTL.days
        console.print(Text(f"The audit stays in Redis for {days} day(s); read it with:"))
        # the command on a line of its own, never broken: it is meant to be copied
        print_whole(console, f"  REDIS_URL={mask_url(local.url)} KEY_PREFIX={prefix} "
                             "cancelq audit")
    console.print(f"[bold]7. Stopping[/bold] worker, simulator"
                  f"{'' if local.kind == 'external' else ' and Redis'}.")


def _expire_leftovers(store: AuditStore) -> None:
    expire_demo_keys(store.redis, store.keys.prefix)


def expire_demo_keys(
    client: redis.Redis, prefix: str, ttl: timedelta = DEMO_KEYS_TTL
) -> int:
    """Give every key the demo left without an expiry one; returns how many got one.

    Its own keys (under `prefix`), the broker's lists for our queues and kombu's and
    Celery's bookkeeping in the demo's database. Keys that already expire keep their TTL.
    """
    seconds = int(ttl.total_seconds())
    names: set[str] = set(Queues.for_prefix(prefix).list_keys())
    for pattern in (f"{prefix}*", *BROKER_KEY_PATTERNS):
        names.update(decode_text(key) for key in client.scan_iter(match=pattern, count=1000))
    pipe = client.pipeline(transaction=False)
    for name in sorted(names):
        pipe.expire(name, seconds, nx=True)
    return sum(1 for applied in pipe.execute() if applied)


def _wait_settled(
    store: AuditStore, job_ids: list[str], timeout: float, worker: subprocess.Popen[str]
) -> dict[str, JobRecord]:
    deadline = time.monotonic() + timeout
    with console.status("5. Waiting for every job to settle…"):
        while True:
            records = {r.job_id: r for r in store.get_many(job_ids)}
            if all(r.state.is_final for r in records.values()) and len(records) == len(job_ids):
                return records
            if worker.poll() is not None or time.monotonic() > deadline:
                if worker.poll() is not None and worker.stdout is not None:
                    console.print(worker.stdout.read())
                return records
            time.sleep(0.2)


def _show(
    submitted: list[tuple[Case, str]],
    records: dict[str, JobRecord],
    store: AuditStore,
    control: SimulatorControl,
) -> None:
    console.print(_outcomes_table(submitted, records))
    console.print(summary_table(store.counters(), control.stats()["by_status"]))


def _outcomes_table(submitted: list[tuple[Case, str]], records: dict[str, JobRecord]) -> Table:
    table = Table(title="6. Outcomes", header_style="bold")
    for column in ("request", "job", "state", "outcome", "calls", "expected"):
        table.add_column(column, no_wrap=column != "request")  # the label wraps first
    for case, job_id in submitted:
        record = records.get(job_id)
        outcome = record.outcome if record else None
        mark = Text("✓", "green") if outcome == case.expect else Text(f"✗ {case.expect}", "red")
        table.add_row(case.label, job_id[:8], record.state.value if record else "?",
                      outcome or "-", str(record.attempt_count if record else 0), mark)
    return table


def summary_table(counters: Mapping[str, int], calls_by_status: Mapping[str, int]) -> Table:
    """What the audit recorded and what the simulator saw, side by side, as counts."""
    table = Table(title="Audit summary", header_style="bold")
    table.add_column("recorded")
    table.add_column("count", justify="right")
    table.add_row("jobs", f"{counters.get('jobs', 0):,}")
    table.add_row("calls recorded", f"{counters.get('attempts', 0):,}")
    for kind in ("state", "outcome"):
        for key, value in sorted(counters.items()):
            if key.startswith(f"{kind}:") and value:
                table.add_row(f"{kind} {key.split(':', 1)[1]}", f"{value:,}")
    table.add_section()
    table.add_row("simulator calls", f"{sum(calls_by_status.values()):,}")
    for status, count in sorted(calls_by_status.items()):
        table.add_row(f"  HTTP {status}", f"{count:,}")
    return table

