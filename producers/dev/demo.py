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
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from cancelq.core.settings import load_settings
from cancelq.core.urls import mask_url
from cancelq.store.audit import AuditStore, JobRecord, audit_store
from producers.dev.local_redis import LocalRedis, answers, ensure_redis
from producers.enqueue import enqueue_cancellation
from simulator.control import SimulatorControl, spawn_simulator

DEMO_KEY = "demo-key-not-a-secret"
DEMO_DB = 15
SETTLE_TIMEOUT_SECONDS = 90.0

console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)


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


def run_demo(*, jobs_timeout: float = SETTLE_TIMEOUT_SECONDS) -> int:
    settings = load_settings()
    with ExitStack() as stack:
        local = stack.enter_context(_redis_for_demo(settings.redis_url))
        where = {
            "external": f"the Redis at REDIS_URL (database {DEMO_DB})",
            "redis-server": "a private redis-server on a free port",
            "embedded": "an embedded Redis (fakeredis; no redis-server installed)",
        }[local.kind]
        console.print(f"[bold]1. Redis[/bold]: {where}: {mask_url(local.url)}")

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CANCEL_", "CARE360_", "CV_API_KEY", "CELERY_"))}
        # Its own key and queue prefix (queue names derive from KEY_PREFIX): two demos at
        # once on one Redis never take each other's jobs.
        prefix = f"demo-{int(time.time())}-{os.getpid()}"
        env.update(
            REDIS_URL=local.url,
            KEY_PREFIX=prefix,
            CV_API_KEY=DEMO_KEY,
            CANCEL_MAX_ATTEMPTS="4",
            CANCEL_RETRY_BASE_SECONDS="0.2",
            CANCEL_RETRY_MAX_SECONDS="2",
            CARE360_TIMEOUT_SECONDS="3",
            RETRY_SCHEDULER_INTERVAL_SECONDS="0.1",
            PYTHONUNBUFFERED="1",
        )
        try:
            sim, sim_url = spawn_simulator("--api-key", DEMO_KEY, "--latency-ms", "30", env=env)
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        stack.callback(_stop, sim, "simulator")
        control = stack.enter_context(SimulatorControl(sim_url))
        control.wait_ready(10)
        console.print(f"[bold]2. Care360 simulator[/bold]: {sim_url} (30 ms latency)")

        env["CARE360_BASE_URL"] = sim_url
        worker = stack.enter_context(_process(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "warning",
             "-c", "8", "-n", f"demo-{os.getpid()}@%h", "--without-mingle", "--without-gossip"],
            env, "worker"))
        console.print(f"[bold]3. Celery worker[/bold]: pid {worker.pid}, threads pool, 8 slots")

        store = audit_store(load_settings(REDIS_URL=local.url, KEY_PREFIX=prefix))
        batch = build_batch(control)
        submitted: list[tuple[Case, str]] = []
        for case in batch:
            result = enqueue_cancellation(case.case_id, case.event_id, store=store,
                                          requested_by="cancelq demo", run_id=prefix)
            submitted.append((case, result.job_id))
        dup = enqueue_cancellation(batch[0].case_id, batch[0].event_id, store=store,
                                   requested_by="cancelq demo")
        console.print(f"[bold]4. Enqueued[/bold] {len(submitted)} jobs; the same request "
                      f"again came back as duplicate={dup.duplicate} (job {dup.job_id[:8]}…)")

        records = _wait_settled(store, [job for _, job in submitted], jobs_timeout, worker)
        _show(submitted, records, store, control)
        wrong = [c for c, j in submitted if records.get(j) and records[j].outcome != c.expect]
        unsettled = [c for c, j in submitted if not (records.get(j) and records[j].state.is_final)]
        if local.kind == "external":
            console.print(f"The audit stays in Redis: REDIS_URL={mask_url(local.url)} "
                          f"KEY_PREFIX={prefix} "
                          "cancelq audit")
        console.print(f"[bold]7. Stopping[/bold] worker, simulator"
                      f"{'' if local.kind == 'external' else ' and Redis'}.")
    if unsettled or wrong:
        console.print(f"[red]{len(unsettled)} unsettled, {len(wrong)} unexpected outcomes[/red]")
        return 1
    console.print("[green]Every job ended in its expected, recorded outcome.[/green]")
    return 0


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
    table = Table(title="6. Outcomes", header_style="bold")
    for column in ("request", "job", "state", "outcome", "calls", "expected"):
        table.add_column(column, no_wrap=True)
    for case, job_id in submitted:
        record = records.get(job_id)
        outcome = record.outcome if record else None
        mark = "[green]✓[/green]" if outcome == case.expect else f"[red]✗ {case.expect}[/red]"
        table.add_row(case.label, job_id[:8], record.state.value if record else "?",
                      outcome or "-", str(record.attempt_count if record else 0), mark)
    console.print(table)
    counters = store.counters()
    states = Counter({k.split(":", 1)[1]: v for k, v in counters.items()
                      if k.startswith("state:") and v})
    outcomes = Counter({k.split(":", 1)[1]: v for k, v in counters.items()
                        if k.startswith("outcome:") and v})
    stats = control.stats()
    console.print(f"Audit summary: {counters.get('jobs', 0)} jobs, "
                  f"{counters.get('attempts', 0)} calls recorded; states {dict(states)}; "
                  f"outcomes {dict(outcomes)}")
    console.print(f"Simulator saw {stats['total']} calls: {dict(stats['by_status'])}")
