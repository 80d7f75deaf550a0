"""Writing a chunk of bulk rows: messages from a template, one Lua call per chunk.

Two costs dominated a naive intake (measured, docs/bulk.md): `build_task_message` (~40 us a
row: a nested `json.dumps`) and one `enqueue.lua` call per row (~38 us of Redis time plus
the client's packing). Here the message is cut from a template made *by*
`build_task_message` itself, so only the fields that change per row are encoded; and
`AuditStore.start_enqueue_many` (`cancelq/store/lua/enqueue_many.lua`) records and pushes a
whole chunk in one call, with the same keys and the same idempotency rule as `enqueue.lua`
(tests compare the two). This module only makes messages: what reaches Redis, and how,
is the store's.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cancelq.store.audit import AuditStore, NewJob
from cancelq.store.messages import TaskMessage, build_task_message, kwargs_repr
from cancelq.store.records import Enqueued

_MARK = "\x01"
_SLOTS = ("B", "I", "K", "T")  # body, task id, kwargsrepr, delivery tag


class MessageTemplate:
    """`build_task_message` for one queue, fast: the same bytes, for many rows."""

    def __init__(self, queue: str, priority: int = 0) -> None:
        sample = build_task_message({"job_id": "x"}, queue=queue, task_id="x", priority=priority)
        self.queue = queue
        self.queue_key = sample.queue_key
        message = json.loads(sample.payload)
        #: the body's third element (Celery's callbacks/errbacks/chain/chord), the same for all
        self.embed: dict[str, Any] = json.loads(base64.b64decode(message["body"]))[2]
        message["body"] = _MARK + "B"
        headers, properties = message["headers"], message["properties"]
        headers["id"] = headers["root_id"] = properties["correlation_id"] = _MARK + "I"
        headers["kwargsrepr"] = _MARK + "K"
        properties["delivery_tag"] = _MARK + "T"
        text = json.dumps(message, separators=(",", ":"))
        # json.dumps writes the marker as \u0001: split on the quoted placeholders
        pieces = re.split(r'"\\u0001([BIKT])"', text)
        self._literals = pieces[0::2]
        self._slots = pieces[1::2]
        if sorted(set(self._slots)) != sorted(_SLOTS):
            raise RuntimeError("build_task_message changed shape: update MessageTemplate")

    def build(self, kwargs: dict[str, Any], task_id: str) -> TaskMessage:
        body = json.dumps([[], kwargs, self.embed], separators=(",", ":")).encode()
        return self.assemble(body, json.dumps(task_id), json.dumps(kwargs_repr(kwargs)), task_id)

    def assemble(self, body: bytes, task_id_json: str, kwargsrepr_json: str,
                 task_id: str) -> TaskMessage:
        """The message around an encoded body, task id and kwargsrepr (JSON texts, as-is)."""
        values = {
            "B": '"' + base64.b64encode(body).decode("ascii") + '"',
            "I": task_id_json,
            "K": kwargsrepr_json,
            "T": '"' + uuid4_str() + '"',
        }
        out = [self._literals[0]]
        for slot, literal in zip(self._slots, self._literals[1:], strict=True):
            out.append(values[slot])
            out.append(literal)
        return TaskMessage(queue_key=self.queue_key, payload="".join(out), task_id=task_id)


class RunMessages:
    """The messages of one run's rows, where only the ids and the reason change.

    Everything that is the same for the whole run (run id, requester, the message's frame)
    is encoded once; a row adds its three ids, which are canonical UUIDs (as `read_rows`
    gives them: nothing to escape), and its reason. The result is byte for byte what
    `build_task_message` writes (tests/bulk/test_intake.py), at about half the cost.
    """

    def __init__(self, template: MessageTemplate, run_id: str, requested_by: str | None) -> None:
        self.template = template
        common = {k: v for k, v in (("run_id", run_id), ("requested_by", requested_by)) if v}
        self._body_common = "".join(
            "," + json.dumps(k) + ":" + json.dumps(v) for k, v in common.items()
        )
        self._body_end = "}," + json.dumps(template.embed, separators=(",", ":")) + "]"
        # kwargsrepr shows the run id too (`cancelq.store.messages.kwargs_repr`): JSON-escaped once
        self._repr_end = (json.dumps(f", 'run_id': {run_id!r}")[1:-1] if run_id else "") + '}"'

    def build(self, job_id: str, case_id: str, event_id: str, reason: str | None) -> TaskMessage:
        body = (
            '[[],{"job_id":"' + job_id + '","case_id":"' + case_id + '","event_id":"' + event_id
            + '"' + self._body_common + (',"reason":' + json.dumps(reason) if reason else "")
            + self._body_end
        )
        kwargsrepr = (
            "\"{'job_id': '" + job_id + "', 'case_id': '" + case_id + "', 'event_id': '"
            + event_id + "'" + self._repr_end
        )
        return self.template.assemble(body.encode(), '"' + job_id + '"', kwargsrepr, job_id)


@dataclass(frozen=True, slots=True)
class BulkRow:
    """One validated row: canonical ids, an optional reason."""

    line: int
    case_id: str
    event_id: str
    reason: str | None = None


class BulkWriter:
    """Enqueue chunks of rows of one run on the bulk queue (`enqueue_many.lua`)."""

    def __init__(
        self,
        store: AuditStore,
        *,
        run_id: str,
        requested_by: str | None,
        queue: str | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.requested_by = requested_by
        self.template = MessageTemplate(queue or store.queues.bulk)
        self.messages = RunMessages(self.template, run_id, requested_by)

    def send(self, rows: Sequence[BulkRow], *, now: float | None = None) -> list[Enqueued]:
        """Record and push the rows; one `Enqueued` per row (duplicates flagged), in order."""
        return self.start(rows, now=now)()

    def start(
        self, rows: Sequence[BulkRow], *, now: float | None = None
    ) -> Callable[[], list[Enqueued]]:
        """Send the chunk and return at once; call the result to read what became of each row.

        Redis runs the chunk while the caller reads and builds the next one
        (`AuditStore.start_enqueue_many`). A dropped connection is raised, not retried: the
        chunk may or may not have been applied, and running the file again sends only what
        is missing, the rest being duplicates of live jobs.
        """
        return self.store.start_enqueue_many(
            self._new_jobs(rows),
            run_id=self.run_id,
            requested_by=self.requested_by,
            queue=self.template.queue,
            queue_key=self.template.queue_key,
            now=now,
        )

    def _new_jobs(self, rows: Sequence[BulkRow]) -> list[NewJob]:
        build = self.messages.build
        jobs: list[NewJob] = []
        for row in rows:
            job_id = uuid4_str()
            reason = row.reason or ""
            payload = build(job_id, row.case_id, row.event_id, reason).payload
            jobs.append((job_id, row.case_id, row.event_id, reason, payload))
        return jobs


def uuid4_str() -> str:
    """`str(uuid.uuid4())`, about three times faster (one urandom read, no UUID object)."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
