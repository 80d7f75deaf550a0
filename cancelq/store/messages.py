"""A Celery task message exactly as kombu's Redis transport stores it in a queue list.

Building the message ourselves lets one Lua script record a job *and* push its message in a
single atomic step (no job without a message, no message without a record), and lets bulk
intake pipeline thousands of them (an `apply_async` loop manages ~1,700/s here; a pipelined
LPUSH ~100,000/s). The format is Celery protocol 2 over kombu's virtual transport:
`tests/store/test_messages.py` checks it field by field against what `apply_async` writes.

The anonymous exchange is used on purpose: when kombu restores an unacked message after a
worker dies, it routes it by `routing_key` alone, with no dependence on exchange bindings.

Bulk intake sends batch messages instead (`build_batch_message`: many jobs, one message),
because Celery's cost per message (~1.4 ms of CPU) dominated a bulk run. Their body is the
JSON text itself, not base64: `enqueue_many.lua` assembles them, and Lua has no base64.
kombu accepts both (see `build_batch_message`).
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cancelq.core.contract import BATCH_TASK_NAME, MAX_BATCH_JOBS, TASK_NAME
from cancelq.store.queues import (
    PRIORITY_SEPARATOR,
    PRIORITY_STEPS,
    Queues,
    queue_key,
)
from cancelq.store.records import JobRecord

#: The version of the messages above (docs/deploy.md, "Upgrades"). 1: Celery protocol 2,
#: one-job kwargs `job_id, case_id, event_id[, run_id, requested_by, reason]` (base64 body),
#: batch kwargs `jobs[, run_id, requested_by]` (a utf-8 body). A worker reads every version
#: up to its own: a change that an older worker could not read raises it, keeps the reader
#: of the older one, and adds that release's message to tests/integration/test_upgrade.py.
MESSAGE_FORMAT_VERSION = 1

_ORIGIN = f"cancelq@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A serialized message and the Redis list it belongs in."""

    queue_key: str
    payload: str
    task_id: str


def kwargs_repr(kwargs: dict[str, Any]) -> str:
    """What Flower shows: ids and provenance, and only them (never a secret, never reason)."""
    shown = {k: kwargs[k] for k in ("job_id", "case_id", "event_id", "run_id") if kwargs.get(k)}
    return repr(shown)


def build_task_message(
    kwargs: dict[str, Any],
    *,
    queue: str,
    task_id: str | None = None,
    priority: int = 0,
) -> TaskMessage:
    """One job's message (`TASK_NAME`), its body base64-encoded as kombu's producer writes it."""
    task_id = task_id or str(uuid.uuid4())
    body = json.dumps([[], kwargs, _EMBED], separators=(",", ":")).encode()
    return _message(
        TASK_NAME, base64.b64encode(body).decode("ascii"), "base64",
        kwargsrepr=kwargs_repr(kwargs), queue=queue, task_id=task_id, priority=priority,
    )


def batch_kwargs_repr(run_id: str | None, jobs: int) -> str:
    """What Flower shows for a batch: its run and how many jobs (never an id list, a reason)."""
    return repr({"run_id": run_id, "jobs": jobs})


def batch_job(job_id: str, case_id: str, event_id: str, reason: str | None) -> dict[str, str]:
    """One entry of a batch's `jobs`: the three ids, and the reason only when there is one."""
    job = {"job_id": job_id, "case_id": case_id, "event_id": event_id}
    if reason:
        job["reason"] = reason
    return job


def build_batch_message(
    jobs: Sequence[dict[str, str]],
    *,
    queue: str,
    run_id: str | None,
    requested_by: str | None,
    task_id: str | None = None,
    priority: int = 0,
) -> TaskMessage:
    """Many jobs in one message (`BATCH_TASK_NAME`), as `enqueue_many.lua` writes it.

    The reference for the script's bytes (tests/store/test_messages.py). The body is
    the JSON text itself (`body_encoding` "utf-8"), not base64 as Celery's producer writes:
    the script cannot base64-encode, and kombu's virtual transport (the Redis one) only
    decodes a body whose `body_encoding` is set and not "utf-8" (`Channel.decode_body`);
    otherwise `Message` takes the text as is and encodes it to UTF-8 bytes for the JSON
    deserializer (kombu 5.x, `kombu/transport/virtual/base.py`; tested by decoding with it).
    """
    if not 1 <= len(jobs) <= MAX_BATCH_JOBS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_JOBS} jobs, not {len(jobs)}")
    kwargs: dict[str, Any] = {"jobs": list(jobs)}
    if run_id:
        kwargs["run_id"] = run_id
    if requested_by:
        kwargs["requested_by"] = requested_by
    body = json.dumps([[], kwargs, _EMBED], separators=(",", ":"))
    return _message(
        BATCH_TASK_NAME, body, "utf-8", kwargsrepr=batch_kwargs_repr(run_id, len(jobs)),
        queue=queue, task_id=task_id or str(uuid.uuid4()), priority=priority,
    )


def _message(
    task: str, body: str, body_encoding: str, *, kwargsrepr: str, queue: str, task_id: str,
    priority: int,
) -> TaskMessage:
    """The protocol 2 frame around an encoded body: one copy for single and batch messages."""
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": kwargsrepr,
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    message = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": body_encoding,
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return TaskMessage(
        queue_key=queue_key(queue, priority),
        payload=json.dumps(message, separators=(",", ":")),
        task_id=task_id,
    )


def message_job_ids(payload: str | bytes | dict[str, Any]) -> list[str]:
    """Every job a message stored by kombu carries (the parser of the builders above).

    A one-job message names its `job_id` (a foreign producer's, only its task id); a batch
    message lists its `jobs`. Anything unreadable carries none: a message we cannot read is
    no proof that a job's message exists. `payload` may be already parsed (an entry of
    kombu's `unacked` hash holds the message as a JSON value, not as text).
    """
    try:
        message = payload if isinstance(payload, dict) else json.loads(payload)
        raw = message["body"]
        if (message.get("properties") or {}).get("body_encoding", "base64") == "base64":
            raw = base64.b64decode(raw)
        body = json.loads(raw)
        kwargs = body[1] if isinstance(body, list) and len(body) > 1 else {}
        if not isinstance(kwargs, dict):
            return []
        jobs = kwargs.get("jobs")
        if isinstance(jobs, list):
            return [str(j["job_id"]) for j in jobs if isinstance(j, dict) and j.get("job_id")]
        return [str(kwargs.get("job_id") or message["headers"]["id"])]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return []


def priority_of(key: str | None) -> int:
    """The priority step of a queue list's name (0 for the plain queue or anything odd)."""
    if not key or PRIORITY_SEPARATOR not in key:
        return 0
    step = key.rsplit(PRIORITY_SEPARATOR, 1)[1]
    return int(step) if step.isdigit() and int(step) in PRIORITY_STEPS else 0


class JobFields(Protocol):
    """What a one-job message carries besides the job id: a `CancelRequest` or a `JobRecord`."""

    @property
    def case_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def requested_by(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...


def job_message(
    job_id: str, job: JobFields, *, queue: str, priority: int = 0, task_id: str | None = None
) -> TaskMessage:
    """The one builder of a one-job message, for a producer, a retry and a replay alike.

    Its kwargs, in this order, are what `message_job_ids` reads back and the task validates;
    an empty optional field is left out, as a request's unset one is.
    """
    kwargs: dict[str, Any] = {"job_id": job_id, "case_id": job.case_id,
                              "event_id": job.event_id}
    for name in ("run_id", "requested_by", "reason"):
        value = getattr(job, name)
        if value:
            kwargs[name] = value
    return build_task_message(kwargs, queue=queue, task_id=task_id, priority=priority)


def rerun_message(record: JobRecord, queues: Queues, priority: int = 0) -> TaskMessage:
    """A fresh message that runs the recorded job again, on its own (known) queue."""
    return job_message(record.job_id, record, queue=queues.known(record.queue),
                       priority=priority)


#: The parts of a `BatchTemplate` that change per batch message (`enqueue_many.lua` fills them)
BATCH_SLOTS = {"J": "the jobs, joined by ','", "I": "task id", "N": "job count",
               "T": "delivery tag"}
_CUT = "\x00"  # never raw in JSON text: it separates the template's literals from its slots


class BatchTemplate:
    """`build_batch_message` for one run on one queue, cut where a batch differs.

    `parts` alternates literal text and slot names (`BATCH_SLOTS`), starting and ending with
    a literal: joining them with each slot's value gives the bytes `build_batch_message`
    writes. `enqueue_many.lua` does that join for the rows it accepts, so the message is
    made where the duplicates are known, in the same atomic call that records the jobs.
    Made from `build_batch_message`'s own output (not a second copy of the format), with
    random markers, and checked: a change of format fails here, not in a worker.
    """

    def __init__(self, queue: str, *, run_id: str, requested_by: str | None,
                 priority: int = 0) -> None:
        self.queue, self.run_id, self.requested_by = queue, run_id, requested_by
        marker, task_id = str(uuid.uuid4()), str(uuid.uuid4())
        sample = build_batch_message([{"job_id": marker}], queue=queue, run_id=run_id,
                                     requested_by=requested_by, task_id=task_id,
                                     priority=priority)
        self.queue_key = sample.queue_key
        tag = json.loads(sample.payload)["properties"]["delivery_tag"]
        one, many = json.dumps(batch_kwargs_repr(run_id, 1)), batch_kwargs_repr(run_id, 22)
        head, _, tail = one.rpartition("1")
        if head + "22" + tail != json.dumps(many):
            raise RuntimeError("batch_kwargs_repr changed shape: update BatchTemplate")
        text = (
            sample.payload.replace(job_fragment_of({"job_id": marker}), _CUT + "J" + _CUT)
            .replace(f'"{task_id}"', f'"{_CUT}I{_CUT}"')
            .replace(f'"{tag}"', f'"{_CUT}T{_CUT}"')
            .replace(one, head + _CUT + "N" + _CUT + tail)
        )
        self.parts = tuple(text.split(_CUT))
        slots = sorted(self.parts[1::2])
        if slots != sorted(["J", "I", "I", "I", "N", "T"]):
            raise RuntimeError(f"build_batch_message changed shape ({slots}): update BatchTemplate")

    def fill(self, fragments: Sequence[str], task_id: str, delivery_tag: str) -> TaskMessage:
        """The message `enqueue_many.lua` writes for these fragments (Python's copy, for tests)."""
        values = {"J": ",".join(fragments), "I": task_id, "N": str(len(fragments)),
                  "T": delivery_tag}
        text = "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(self.parts))
        return TaskMessage(queue_key=self.queue_key, payload=text, task_id=task_id)


def job_fragment_of(job: dict[str, str]) -> str:
    """A `jobs` entry as it appears inside a batch message's text: JSON in a JSON string."""
    return json.dumps(json.dumps(job, separators=(",", ":")))[1:-1]


def job_fragment(job_id: str, case_id: str, event_id: str, reason: str | None) -> str:
    """`job_fragment_of(batch_job(...))`, fast, for ids that are canonical UUIDs (no escaping).

    Bulk intake makes one per row; only the reason needs encoding (twice: JSON text of the
    body, inside the message's JSON string).
    """
    text = ('{\\"job_id\\":\\"' + job_id + '\\",\\"case_id\\":\\"' + case_id
            + '\\",\\"event_id\\":\\"' + event_id + '\\"')
    if reason:
        text += ',\\"reason\\":' + json.dumps(json.dumps(reason))[1:-1]
    return text + "}"
