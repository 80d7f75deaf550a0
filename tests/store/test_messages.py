"""`build_task_message`: Celery protocol 2 as kombu's Redis transport stores it.

The reference is Celery itself: the same task sent with `send_task` over kombu's in-memory
virtual transport (which prepares messages exactly as the Redis one does) is compared with
ours field by field. The priority list names are checked against kombu's Redis channel code.
"""

from __future__ import annotations

import ast
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Queue
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from cancelq.core.contract import BATCH_TASK_NAME, MAX_BATCH_JOBS, TASK_NAME, CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.messages import (
    BatchTemplate,
    batch_job,
    build_batch_message,
    build_task_message,
    job_fragment,
    job_fragment_of,
    job_message,
    kwargs_repr,
    message_job_ids,
    rerun_message,
)
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, Queues, queue_key
from cancelq.store.records import JobRecord

KWARGS: dict[str, Any] = {
    "job_id": "4a6f2a63-9e0e-4f57-9d1c-0d0e1f2a3b4c",
    "case_id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
    "event_id": "987fcdeb-51a2-43d7-9876-543210fedcba",
    "run_id": "run-7",
    "requested_by": "ops@example.com",
    "reason": "patient asked; secret note",
}


def decode(payload: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(payload)
    return message


def celery_reference(kwargs: dict[str, Any], *, queue: str, task_id: str,
                     priority: int = 0, task: str = TASK_NAME) -> dict[str, Any]:
    """What Celery's own producer writes for the same task."""
    app = Celery("reference", broker="memory://", set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], task_ignore_result=True,
        task_queues=(Queue(REALTIME_QUEUE), Queue(BULK_QUEUE)),
    )
    with app.connection_for_write() as conn:
        app.send_task(task, kwargs=kwargs, queue=queue, task_id=task_id,
                      priority=priority, connection=conn)
        channel: Any = conn.default_channel
        message: dict[str, Any] = channel._get(queue)
    return message



def assert_same_frame(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    """The same keys everywhere and the same headers as Celery writes (the id-free ones)."""
    assert set(ours) == set(ref)
    assert set(ours["headers"]) == set(ref["headers"])
    assert set(ours["properties"]) == set(ref["properties"])
    for name in ("lang", "task", "id", "root_id", "parent_id", "argsrepr", "retries",
                 "timelimit", "eta", "expires", "group", "group_index", "shadow",
                 "replaced_task_nesting", "stamped_headers", "stamps"):
        assert ours["headers"][name] == ref["headers"][name], name

def test_matches_what_celery_writes() -> None:
    task_id = str(uuid.uuid4())
    ours = decode(build_task_message(KWARGS, queue=BULK_QUEUE, task_id=task_id).payload)
    ref = celery_reference(KWARGS, queue=BULK_QUEUE, task_id=task_id)

    assert_same_frame(ours, ref)
    for name in ("correlation_id", "delivery_mode", "delivery_info", "priority",
                 "body_encoding"):
        assert ours["properties"][name] == ref["properties"][name], name
    assert ours["content-type"] == ref["content-type"] == "application/json"
    assert ours["content-encoding"] == ref["content-encoding"] == "utf-8"
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(base64.b64decode(ref["body"]))


def test_protocol_2_fields() -> None:
    message = build_task_message(KWARGS, queue=REALTIME_QUEUE, task_id="tid-1")
    assert message.task_id == "tid-1"
    assert message.queue_key == REALTIME_QUEUE
    raw = decode(message.payload)
    headers, properties = raw["headers"], raw["properties"]
    assert headers["task"] == TASK_NAME == "cancellations.cancel_calendar_event"
    assert (headers["id"], headers["root_id"], headers["parent_id"]) == ("tid-1", "tid-1", None)
    assert headers["argsrepr"] == "()"
    assert properties["correlation_id"] == "tid-1"
    assert properties["delivery_info"] == {"exchange": "", "routing_key": REALTIME_QUEUE}
    assert properties["body_encoding"] == "base64"
    assert properties["priority"] == 0
    args, kwargs, embed = json.loads(base64.b64decode(raw["body"]))
    assert args == []
    assert kwargs == KWARGS
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_task_id_defaults_to_a_fresh_uuid() -> None:
    a = build_task_message(KWARGS, queue=REALTIME_QUEUE)
    b = build_task_message(KWARGS, queue=REALTIME_QUEUE)
    assert a.task_id != b.task_id
    assert str(uuid.UUID(a.task_id)) == a.task_id
    assert decode(a.payload)["headers"]["id"] == a.task_id
    assert decode(a.payload)["properties"]["delivery_tag"] != decode(b.payload)["properties"][
        "delivery_tag"
    ]


def test_kwargsrepr_shows_ids_only() -> None:
    raw = decode(build_task_message(KWARGS, queue=REALTIME_QUEUE).payload)
    shown = ast.literal_eval(raw["headers"]["kwargsrepr"])
    assert shown == {k: KWARGS[k] for k in ("job_id", "case_id", "event_id", "run_id")}
    assert "reason" not in raw["headers"]["kwargsrepr"]
    assert "secret" not in raw["headers"]["kwargsrepr"]
    assert "ops@example.com" not in raw["headers"]["kwargsrepr"]


def test_kwargsrepr_skips_missing_ids_and_unknown_keys() -> None:
    shown = ast.literal_eval(kwargs_repr({"case_id": "c", "event_id": "e", "run_id": None,
                                          "token": "t0p-s3cret"}))
    assert shown == {"case_id": "c", "event_id": "e"}


_REDIS_CHANNEL: Any = kombu_redis.Channel
_VIRTUAL_CHANNEL: Any = virtual.Channel


class _KombuRedisChannel:
    """Just enough of kombu's Redis channel to ask it which list a message goes to."""

    sep = _REDIS_CHANNEL.sep
    priority_steps = _REDIS_CHANNEL.priority_steps
    min_priority = _VIRTUAL_CHANNEL.min_priority
    max_priority = _VIRTUAL_CHANNEL.max_priority
    default_priority = _VIRTUAL_CHANNEL.default_priority
    priority = _REDIS_CHANNEL.priority
    _q_for_pri = _REDIS_CHANNEL._q_for_pri
    _get_message_priority = _VIRTUAL_CHANNEL._get_message_priority

    def list_for(self, queue: str, message: dict[str, Any]) -> str:
        name: str = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        return name


@pytest.mark.parametrize("priority", range(-1, 12))
def test_priority_list_is_where_kombu_puts_it(priority: int) -> None:
    message = build_task_message(KWARGS, queue=BULK_QUEUE, priority=priority)
    raw = decode(message.payload)
    assert raw["properties"]["priority"] == priority
    assert raw["properties"]["delivery_info"]["routing_key"] == BULK_QUEUE
    assert message.queue_key == _KombuRedisChannel().list_for(BULK_QUEUE, raw)


def test_priority_key_naming() -> None:
    assert queue_key(REALTIME_QUEUE) == REALTIME_QUEUE
    assert queue_key(REALTIME_QUEUE, 0) == REALTIME_QUEUE
    assert queue_key(BULK_QUEUE, 3) == "cancellations.bulk\x06\x163"
    assert queue_key(BULK_QUEUE, 9) == "cancellations.bulk\x06\x169"


def test_payload_is_plain_json_text() -> None:
    payload = build_task_message(KWARGS, queue=REALTIME_QUEUE).payload
    assert isinstance(payload, str)
    assert "\n" not in payload  # the delayed-set entry splits on the first newline


# -- batch messages (bulk intake) -----------------------------------------------------------


JOBS = [
    batch_job(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), reason)
    for reason in ("patient asked; 100% sure", None, 'caf\u00e9 "q" \\ \u2603 %s %1')
]


def kombu_decode(payload: str) -> Any:
    """What kombu's virtual transport (the Redis one's base) makes of a stored message."""
    with Connection("memory://") as conn:
        channel: Any = conn.default_channel  # a virtual.Channel, typed as kombu's abstract one
        return virtual.Message(json.loads(payload), channel=channel).decode()


def test_the_redis_transport_decodes_bodies_as_the_virtual_one_does() -> None:
    """The proof below uses the virtual channel's `decode_body`: Redis's must be that one."""
    assert kombu_redis.Channel.decode_body is virtual.Channel.decode_body
    assert kombu_redis.Channel.Message is virtual.Message


def test_batch_message_matches_what_celery_writes_but_for_its_plain_body() -> None:
    task_id = str(uuid.uuid4())
    ours = decode(build_batch_message(JOBS, queue=BULK_QUEUE, run_id="run-7",
                                      requested_by="ops@example.com", task_id=task_id,
                                      priority=3).payload)
    kwargs = {"jobs": JOBS, "run_id": "run-7", "requested_by": "ops@example.com"}
    ref = celery_reference(kwargs, queue=BULK_QUEUE, task_id=task_id, priority=3,
                           task=BATCH_TASK_NAME)
    assert_same_frame(ours, ref)
    for name in ("correlation_id", "delivery_mode", "delivery_info", "priority"):
        assert ours["properties"][name] == ref["properties"][name], name
    assert ours["headers"]["task"] == "cancellations.cancel_calendar_events"
    assert ours["properties"]["body_encoding"] == "utf-8"  # Lua cannot base64
    assert json.loads(ours["body"]) == json.loads(base64.b64decode(ref["body"]))
    assert kombu_decode(json.dumps(ours)) == kombu_decode(json.dumps(ref))


def test_batch_message_fields_and_kwargsrepr() -> None:
    message = build_batch_message(JOBS, queue=BULK_QUEUE, run_id="run-7",
                                  requested_by=None, task_id="tid-9")
    assert (message.task_id, message.queue_key) == ("tid-9", BULK_QUEUE)
    raw = decode(message.payload)
    assert ast.literal_eval(raw["headers"]["kwargsrepr"]) == {"run_id": "run-7", "jobs": 3}
    assert "patient" not in raw["headers"]["kwargsrepr"]
    args, kwargs, embed = kombu_decode(message.payload)
    assert args == [] and kwargs == {"jobs": JOBS, "run_id": "run-7"}
    assert "reason" not in kwargs["jobs"][1]  # only when there is one
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.mark.parametrize("count", [0, MAX_BATCH_JOBS + 1])
def test_a_batch_holds_one_to_max_batch_jobs(count: int) -> None:
    with pytest.raises(ValueError, match="batch"):
        build_batch_message(JOBS[:1] * count, queue=BULK_QUEUE, run_id="r", requested_by=None)


@pytest.mark.parametrize(("run_id", "requested_by"), [
    ("r1", "me@host"), ("run 'q' \"dq\" \\ caf\u00e9 %d 1", None),
])
def test_the_template_filled_is_build_batch_message(run_id: str, requested_by: str | None
                                                    ) -> None:
    template = BatchTemplate(BULK_QUEUE, run_id=run_id, requested_by=requested_by)
    fragments = [job_fragment(j["job_id"], j["case_id"], j["event_id"], j.get("reason"))
                 for j in JOBS]
    assert fragments == [job_fragment_of(job) for job in JOBS]
    filled = template.fill(fragments, "tid", "tag")
    ref = build_batch_message(JOBS, queue=BULK_QUEUE, run_id=run_id,
                              requested_by=requested_by, task_id="tid")
    ref_tag = decode(ref.payload)["properties"]["delivery_tag"]
    assert filled.payload == ref.payload.replace(ref_tag, "tag")
    assert template.parts[1::2].count("I") == 3


# -- the one builder of a one-job message, and its parser -------------------------------

REQUEST = CancelRequest.parse(**{k: v for k, v in KWARGS.items() if k != "job_id"})


def test_job_message_is_what_celery_writes_for_the_request() -> None:
    task_id = str(uuid.uuid4())
    ours = decode(job_message(KWARGS["job_id"], REQUEST, queue=BULK_QUEUE,
                              task_id=task_id).payload)
    ref = celery_reference(KWARGS, queue=BULK_QUEUE, task_id=task_id)
    assert_same_frame(ours, ref)
    body = json.loads(base64.b64decode(ours["body"]))
    assert body == json.loads(base64.b64decode(ref["body"]))
    assert list(body[1]) == list(KWARGS)  # the order every builder writes


@pytest.mark.parametrize("optional", [{}, {"reason": "r"}, {"run_id": "r", "requested_by": "o"}])
def test_a_request_and_its_record_make_the_same_body(optional: dict[str, str]) -> None:
    """A producer's message, a retry's and a replay's (from the record) carry the same bytes."""
    request = CancelRequest.parse(case_id=KWARGS["case_id"], event_id=KWARGS["event_id"],
                                  **optional)
    record = JobRecord(job_id=KWARGS["job_id"], case_id=request.case_id,
                       event_id=request.event_id, run_id=request.run_id,
                       requested_by=request.requested_by, reason=request.reason,
                       state=State.RETRYING, outcome=None, attempt_count=1, created_at=0.0,
                       updated_at=0.0, settled_at=None, next_attempt_at=None,
                       queue=BULK_QUEUE)
    old = build_task_message({"job_id": KWARGS["job_id"], **request.model_dump(exclude_none=True)},
                             queue=BULK_QUEUE, priority=3)
    new = job_message(KWARGS["job_id"], request, queue=BULK_QUEUE, priority=3)
    rerun = rerun_message(record, Queues(), priority=3)
    for message in (new, rerun):
        assert message.queue_key == old.queue_key
        assert decode(message.payload)["body"] == decode(old.payload)["body"]
        assert decode(message.payload)["headers"]["kwargsrepr"] == \
            decode(old.payload)["headers"]["kwargsrepr"]
        assert message_job_ids(message.payload) == [KWARGS["job_id"]]


def test_message_job_ids_reads_our_messages_and_refuses_junk() -> None:
    message = build_task_message({"job_id": "J1", "case_id": "c"}, queue=REALTIME_QUEUE,
                                 task_id="T1")
    assert message_job_ids(message.payload) == ["J1"]
    no_arg = build_task_message({"case_id": "c"}, queue=REALTIME_QUEUE, task_id="T2")
    assert message_job_ids(no_arg.payload) == ["T2"]  # a foreign producer's: the task id
    for junk in ("", "{}", '{"body": "!!"}', "[]"):
        assert message_job_ids(junk) == []
    batch = build_batch_message([batch_job("J3", "c", "e", None), batch_job("J4", "c", "f", "x")],
                                queue=REALTIME_QUEUE, run_id="r", requested_by=None)
    assert message_job_ids(batch.payload) == ["J3", "J4"]


def test_one_job_messages_are_built_by_job_message_only() -> None:
    """No module but this one frames a one-job message: one builder beside its parser."""
    root = Path(__file__).resolve().parents[2]
    callers = [
        str(path.relative_to(root))
        for package in ("cancelq", "worker", "producers", "web")
        for path in sorted((root / package).rglob("*.py"))
        if path.name != "messages.py" and "build_task_message(" in path.read_text("utf-8")
    ]
    assert callers == []
