"""A batch of bulk jobs in one worker step: the same attempt as `run_attempt`, for many jobs.

Celery's cost per message (delivery, events, the unacked bookkeeping, the ack: ~1.4 ms of
CPU here) is what made the bulk path slower than a 64-thread script, so bulk intake puts
many jobs in one message and this runs them together:

1. the gates: every gate for the first job; when it goes ahead plainly, the gates whose
   verdict holds for every job at one moment (`Gate.per_batch`: the 401 block, the breaker)
   are not asked again, the per-call ones (the rate limit) are asked for each job, and the
   jobs they let through are called in chunks, soon after their go-ahead (`_gated_chunks`);
2. `begin` for every job that may call, pipelined: one round trip, each job its own script
   (its own lease, its own verdict: settled, leased elsewhere, conflict, spent);
3. every call at once (`BatchCaller`: the process's event loop, bounded in flight), under
   the leases of all the batch's running jobs;
4. each answer judged by `attempt.judge` (the same rules as a single job), then every
   `finish` pipelined: one round trip.

Nothing is per batch that a job's guarantees need per job: each job has its record, lease,
attempt line and outcome; a retry goes back as a one-job message on the same queue and
priority. The message is acknowledged after the last job is recorded (`acks_late`): a
worker killed mid-batch leaves the message to be redelivered, and each job then resumes
from its own state (settled: not called again; lease expired: the lost attempt recorded
and the job called again).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cancelq.care360.calls import BatchCaller
from cancelq.core.contract import CancelRequest
from cancelq.pipeline.attempt import (
    AttemptContext,
    AttemptResult,
    Call,
    gate_verdict,
    judge,
    not_begun,
    record_all,
)
from cancelq.pipeline.retry_policy import RetryPolicy
from cancelq.pipeline.runtime import Runtime
from cancelq.store.records import Begun

#: seconds a go-ahead may wait for the rest of its chunk to be asked before the chunk is called
MAX_GO_AHEAD_AGE = 0.1


@dataclass(frozen=True, slots=True)
class _Running:
    """A job whose attempt began: its index in the batch, `begin`'s word, and its gates'."""

    index: int
    begun: Begun
    probe: bool


def run_batch(
    rt: Runtime,
    jobs: Sequence[tuple[str, CancelRequest]],
    caller: BatchCaller,
    *,
    queue: str,
    priority: int = 0,
) -> list[AttemptResult]:
    """Run one attempt of every (job id, request); one result per job, in order.

    Only a Redis error leaves this function (for the task to hand the message back); every
    other failure is a job's recorded outcome, as in `run_attempt`.
    """
    queue = rt.store.queues.known(queue)
    ctxs = [AttemptContext(rt, job_id, request, queue, priority) for job_id, request in jobs]
    out: list[AttemptResult | None] = [None] * len(ctxs)
    for ready in _gated_chunks(ctxs, out):
        running = _begin_all(rt, ctxs, ready, out)
        if running:
            held = [(ctxs[job.index].job_id, ctxs[job.index].owner) for job in running]
            with rt.lease_keeper.hold_many(held):
                for job, result in zip(running, _call_all(ctxs, running, caller), strict=True):
                    out[job.index] = result
    return [result for result in out if result is not None]


def _gated_chunks(ctxs: Sequence[AttemptContext], out: list[AttemptResult | None]
                  ) -> Iterator[list[tuple[int, bool]]]:
    """(index, probe) of the jobs the gates let call, in chunks to call at once; the others'
    results go in `out`.

    A chunk ends where a gate held a job back, or once its first go-ahead is
    `MAX_GO_AHEAD_AGE` old: a go-ahead is a promise about *now* (the rate limit's slot is
    counted when it is taken), so a job that got one is called soon after, not once the
    whole batch has been asked. Without a limit the whole batch is one chunk.
    """
    gates = list(ctxs[0].rt.gates) if ctxs else []
    ready: list[tuple[int, bool]] = []
    first_at = 0.0
    for index, ctx in enumerate(ctxs):
        verdict = gate_verdict(ctx, gates)
        held_back = isinstance(verdict, AttemptResult)
        if isinstance(verdict, AttemptResult):
            out[index] = verdict
        else:
            if not ready:
                first_at = time.monotonic()
            ready.append((index, verdict))
        if index == 0 and verdict is False:
            gates = [gate for gate in gates if not gate.per_batch]
        if ready and (held_back or time.monotonic() - first_at > MAX_GO_AHEAD_AGE):
            yield ready
            ready = []
    if ready:
        yield ready


def _begin_all(rt: Runtime, ctxs: Sequence[AttemptContext], allowed: list[tuple[int, bool]],
               out: list[AttemptResult | None]) -> list[_Running]:
    """`begin` for every allowed job in one round trip; the jobs that may call now."""
    if not allowed:
        return []
    first = ctxs[allowed[0][0]]
    verdicts = rt.store.begin_many(
        [(ctxs[i].job_id, ctxs[i].request, ctxs[i].owner) for i, _probe in allowed],
        max_attempts=RetryPolicy.from_settings(rt.settings).max_attempts,
        queue=first.queue,
        queue_key=first.queue_key,
        lease_seconds=rt.settings.lease_seconds,
        retention_seconds=rt.settings.retention_seconds,
    )
    running: list[_Running] = []
    for (index, probe), begun in zip(allowed, verdicts, strict=True):
        if begun.verdict == "run":
            running.append(_Running(index, begun, probe))
        else:
            out[index] = not_begun(ctxs[index], begun)
    return running


def _call_all(ctxs: Sequence[AttemptContext], running: Sequence[_Running],
              caller: BatchCaller) -> list[AttemptResult]:
    """Every running job's call at once; each judged, then all recorded in one round trip."""
    pairs = [(ctxs[job.index].request.case_id, ctxs[job.index].request.event_id)
             for job in running]
    timed = caller.cancel_many(pairs)
    finishes = [
        judge(ctxs[job.index],
              Call(job.begun.attempt, t.started_at, t.duration_ms, job.begun.used, job.probe),
              t.result)
        for job, t in zip(running, timed, strict=True)
    ]
    return record_all(ctxs[0].rt, finishes)
