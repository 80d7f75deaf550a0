"""Writing a chunk of bulk rows: messages from a template, one Lua call per chunk.

Two costs dominated a naive intake (measured, docs/bulk.md): `build_task_message` (~40 us a
row: a nested `json.dumps`) and one `enqueue.lua` call per row (~38 us of Redis time plus
the client's packing). Here the message is cut from a template made *by*
`build_task_message` itself, so only the fields that change per row are encoded; and
`cancelq/store/lua/enqueue_many.lua` records and pushes a whole chunk in one call, with the same
keys and the same idempotency rule as `enqueue.lua` (tests compare the two).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore, Enqueued, script_source
from cancelq.store.messages import TaskMessage, build_task_message, kwargs_repr

_MARK = "\x01"
_SLOTS = ("B", "I", "K", "T")  # body, task id, kwargsrepr, delivery tag


class MessageTemplate:
    """`build_task_message` for one queue, fast: the same bytes, for many rows."""

    def __init__(self, queue: str, priority: int = 0) -> None:
        sample = build_task_message({"job_id": "x"}, queue=queue, task_id="x", priority=priority)
        self.queue = queue
        self.queue_key = sample.queue_key
        message = json.loads(sample.payload)
        self._embed = json.loads(base64.b64decode(message["body"]))[2]
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
        body = json.dumps([[], kwargs, self._embed], separators=(",", ":")).encode()
        return self._assemble(body, json.dumps(task_id), json.dumps(kwargs_repr(kwargs)), task_id)

    def _assemble(self, body: bytes, task_id_json: str, kwargsrepr_json: str,
                  task_id: str) -> TaskMessage:
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
    `build_task_message` writes (tests/producers/test_bulk.py), at about half the cost.
    """

    def __init__(self, template: MessageTemplate, run_id: str, requested_by: str | None) -> None:
        self.template = template
        common = {k: v for k, v in (("run_id", run_id), ("requested_by", requested_by)) if v}
        self._body_common = "".join(
            "," + json.dumps(k) + ":" + json.dumps(v) for k, v in common.items()
        )
        self._body_end = "}," + json.dumps(template._embed, separators=(",", ":")) + "]"
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
        return self.template._assemble(body.encode(), '"' + job_id + '"', kwargsrepr, job_id)


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
        self._source = script_source("enqueue_many")
        self._sha = store.redis.script_load(self._source)

    def send(self, rows: Sequence[BulkRow], *, now: float | None = None) -> list[Enqueued]:
        """Record and push the rows; one `Enqueued` per row (duplicates flagged), in order."""
        return self.start(rows, now=now)()

    def start(
        self, rows: Sequence[BulkRow], *, now: float | None = None
    ) -> Callable[[], list[Enqueued]]:
        """Send the chunk's script call and return at once; call the result to read the reply.

        Redis runs the script while the caller reads and builds the next chunk: the
        producer's CPU and Redis's overlap without a thread (a sender thread made intake
        slower here: every socket call hands the GIL back and waits to get it again).
        A dropped connection is raised, not retried: the chunk may or may not have been
        applied (the script is atomic), and running the file again sends only what is
        missing, the rest being duplicates of live jobs.
        """
        job_ids, args = self._arguments(rows, now)
        if not rows:
            return list
        pool = self.store.redis.connection_pool
        conn: Any = pool.get_connection()  # redis-py's connection methods are untyped
        try:
            conn.send_command("EVALSHA", self._sha, 0, *args)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise

        def finish() -> list[Enqueued]:
            try:
                try:
                    reply = conn.read_response()
                except redis.exceptions.NoScriptError:  # Redis restarted: scripts are gone
                    conn.send_command("EVAL", self._source, 0, *args)
                    reply = conn.read_response()
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
            return self._results(job_ids, reply)

        return finish

    def _arguments(
        self, rows: Sequence[BulkRow], now: float | None
    ) -> tuple[list[str], list[str]]:
        args: list[str] = [
            self.store.keys.prefix,
            self.run_id,
            self.requested_by or "",
            repr(now if now is not None else time.time()),
            self.template.queue,
            self.template.queue_key,
        ]
        build = self.messages.build
        job_ids: list[str] = []
        for row in rows:
            job_id = uuid4_str()
            job_ids.append(job_id)
            reason = row.reason or ""
            payload = build(job_id, row.case_id, row.event_id, reason).payload
            args.append(f"{job_id}\n{row.case_id}\n{row.event_id}\n{reason}\n{payload}")
        return job_ids, args

    @staticmethod
    def _results(job_ids: list[str], reply: Sequence[Any]) -> list[Enqueued]:
        results = [Enqueued(job_id, False, State.QUEUED) for job_id in job_ids]
        for i in range(0, len(reply), 3):
            row_number, job_id, state = reply[i : i + 3]
            results[int(row_number) - 1] = AuditStore.parse_enqueued((0, job_id, state))
        return results


def uuid4_str() -> str:
    """`str(uuid.uuid4())`, about three times faster (one urandom read, no UUID object)."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
