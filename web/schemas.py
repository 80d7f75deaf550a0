"""The JSON API's shapes, for its OpenAPI document: the CLI's documented `--json` objects
(README "The CLI"), so an upstream system reads the same fields either way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class AttemptOut(BaseModel):
    number: int
    started_at: str | None
    duration_ms: float | None
    http_status: int | None
    error: str | None
    error_class: str | None
    verdict: str | None
    retry_in_seconds: float | None
    worker: str | None = None


class JobOut(BaseModel):
    job_id: str
    case_id: str
    event_id: str
    run_id: str | None
    requested_by: str | None
    reason: str | None
    state: str
    outcome: str | None
    attempt_count: int
    created_at: str | None
    updated_at: str | None
    settled_at: str | None
    next_attempt_at: str | None
    queue: str
    attempts: list[AttemptOut]
    source: Literal["redis", "archive"]


class RunOut(BaseModel):
    run_id: str
    started_at: str | None
    jobs: int
    done: int
    pending: int
    finished: bool
    percent: float
    states: dict[str, int]
    outcomes: dict[str, int]
    source: Literal["redis", "archive"] | None = None
    rate_per_second: float | None = None
    eta_seconds: float | None = None


class DeadLetterOut(BaseModel):
    job_id: str
    case_id: str
    event_id: str
    run_id: str | None
    queue: str
    outcome: str | None
    died_at: str | None
    created_at: str | None
    attempt_count: int
    calls: int
    replays: int
    why: str
    last_attempt: AttemptOut | None


class MinuteOut(BaseModel):
    minute: str | None
    total: int
    by_status: dict[str, int]


class WorkerOut(BaseModel):
    node: str
    host: str
    online: bool
    concurrency: int
    queues: list[str]
    heartbeat_age_seconds: float


class OverviewOut(BaseModel):
    """`cancelq stats --json`'s snapshot, the workers, and calls per minute (last hour)."""

    stats: dict[str, object]
    workers: list[WorkerOut]
    calls_per_minute: list[MinuteOut]


class Problem(BaseModel):
    detail: str
