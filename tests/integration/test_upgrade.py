"""Upgrades: a message the previous release's producers wrote is consumed by today's worker.

The messages below are literals, copied once from what `cancelq.store.messages.job_message`
(also `rerun_message`'s builder: a retry or a replay) and `build_batch_message` (the bytes
`enqueue_many.lua` writes for a bulk run) built at message format version 1
(`MESSAGE_FORMAT_VERSION`). They are never regenerated: a worker that can no longer run them
fails here, before an upgrade leaves such messages on a queue (docs/deploy.md, "Upgrades").
The jobs are recorded by today's store first, with the old bytes as their message, as a
producer of that release left them. (The store's own records and their layout version are
another test's: docs/reliability.md.)
"""

from __future__ import annotations

import json

import pytest

from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.messages import MESSAGE_FORMAT_VERSION, TaskMessage, message_job_ids
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from cancelq.store.records import JobRecord
from tests.conftest import Simulator, wait_for

pytestmark = pytest.mark.integration

#: `job_message(...)` at version 1: job ...0001, case ...5501, event ...6601, run
#: `upgrade-run`, requested by `ops@release-1`, reason "moved to another day".
V1_JOB_MESSAGE = (
    '{"body":"W1tdLHsiam9iX2lkIjoiYWFhYWFhYWEtYmJiYi00Y2NjLThkZGQtMDAwMDAwMDAwMDAxIiwiY2FzZV9p'
    'ZCI6IjExMTExMTExLTIyMjItNDMzMy04NDQ0LTU1NTU1NTU1NTUwMSIsImV2ZW50X2lkIjoiMTExMTExMTEtMjIy'
    'Mi00MzMzLTg0NDQtNjY2NjY2NjY2NjAxIiwicnVuX2lkIjoidXBncmFkZS1ydW4iLCJyZXF1ZXN0ZWRfYnkiOiJv'
    'cHNAcmVsZWFzZS0xIiwicmVhc29uIjoibW92ZWQgdG8gYW5vdGhlciBkYXkifSx7ImNhbGxiYWNrcyI6bnVsbCwi'
    'ZXJyYmFja3MiOm51bGwsImNoYWluIjpudWxsLCJjaG9yZCI6bnVsbH1d","content-encoding":"utf-8",'
    '"content-type":"application/json","headers":{"lang":"py","task":"cancellations.cancel_'
    'calendar_event","id":"aaaaaaaa-bbbb-4ccc-8ddd-000000000001","shadow":null,"eta":null,'
    '"expires":null,"group":null,"group_index":null,"retries":0,"timelimit":[null,null],'
    '"root_id":"aaaaaaaa-bbbb-4ccc-8ddd-000000000001","parent_id":null,"argsrepr":"()",'
    '"kwargsrepr":"{\'job_id\': \'aaaaaaaa-bbbb-4ccc-8ddd-000000000001\', \'case_id\': \'11111'
    '111-2222-4333-8444-555555555501\', \'event_id\': \'11111111-2222-4333-8444-666666666601\''
    ', \'run_id\': \'upgrade-run\'}","origin":"cancelq@vm","ignore_result":true,"replaced_task'
    '_nesting":0,"stamped_headers":null,"stamps":{}},"properties":{"correlation_id":"aaaaaaaa-'
    'bbbb-4ccc-8ddd-000000000001","reply_to":"","delivery_mode":2,"delivery_info":{"exchange":'
    '"","routing_key":"cancellations"},"priority":0,"body_encoding":"base64","delivery_tag":'
    '"e1d2d940-c2c4-4651-83b5-6453b1dda1d7"}}'
)

#: `build_batch_message(...)` at version 1: jobs ...0002 (with a reason) and ...0003 (none),
#: run `upgrade-bulk`, requested by `ops@release-1`, task id ...0009.
V1_BATCH_MESSAGE = (
    '{"body":"[[],{\\"jobs\\":[{\\"job_id\\":\\"aaaaaaaa-bbbb-4ccc-8ddd-000000000002\\",'
    '\\"case_id\\":\\"11111111-2222-4333-8444-555555555502\\",\\"event_id\\":\\"11111111-2222-'
    '4333-8444-666666666602\\",\\"reason\\":\\"duplicate booking\\"},{\\"job_id\\":\\"aaaaaaaa-'
    'bbbb-4ccc-8ddd-000000000003\\",\\"case_id\\":\\"11111111-2222-4333-8444-555555555503\\",'
    '\\"event_id\\":\\"11111111-2222-4333-8444-666666666603\\"}],\\"run_id\\":\\"upgrade-bulk\\",'
    '\\"requested_by\\":\\"ops@release-1\\"},{\\"callbacks\\":null,\\"errbacks\\":null,\\"chain'
    '\\":null,\\"chord\\":null}]","content-encoding":"utf-8","content-type":"application/json",'
    '"headers":{"lang":"py","task":"cancellations.cancel_calendar_events","id":"bbbbbbbb-bbbb-'
    '4ccc-8ddd-000000000009","shadow":null,"eta":null,"expires":null,"group":null,"group_index"'
    ':null,"retries":0,"timelimit":[null,null],"root_id":"bbbbbbbb-bbbb-4ccc-8ddd-000000000009"'
    ',"parent_id":null,"argsrepr":"()","kwargsrepr":"{\'run_id\': \'upgrade-bulk\', \'jobs\': 2}'
    '","origin":"cancelq@vm","ignore_result":true,"replaced_task_nesting":0,"stamped_headers":'
    'null,"stamps":{}},"properties":{"correlation_id":"bbbbbbbb-bbbb-4ccc-8ddd-000000000009",'
    '"reply_to":"","delivery_mode":2,"delivery_info":{"exchange":"","routing_key":"cancellatio'
    'ns.bulk"},"priority":0,"body_encoding":"utf-8","delivery_tag":"d39a089f-65ef-4eb7-b813-57'
    '25a746f5bc"}}'
)

JOB = "aaaaaaaa-bbbb-4ccc-8ddd-0000000000"
CASE = "11111111-2222-4333-8444-5555555555"
EVENT = "11111111-2222-4333-8444-6666666666"


def _request(n: int, **fields: str) -> CancelRequest:
    return CancelRequest.parse(case_id=f"{CASE}{n:02d}", event_id=f"{EVENT}{n:02d}", **fields)


def _settled(store: AuditStore, job_id: str) -> JobRecord | None:
    record = store.get(job_id)
    return record if record is not None and record.state == "settled" else None


def test_the_fixtures_are_well_formed_version_1_messages() -> None:
    assert MESSAGE_FORMAT_VERSION == 1  # a new version adds its fixture beside these
    assert message_job_ids(V1_JOB_MESSAGE) == [f"{JOB}01"]
    assert message_job_ids(V1_BATCH_MESSAGE) == [f"{JOB}02", f"{JOB}03"]
    assert json.loads(V1_BATCH_MESSAGE)["properties"]["body_encoding"] == "utf-8"


def test_todays_worker_runs_the_previous_releases_messages(
    start_worker, simulator: Simulator, real_store: AuditStore,
) -> None:
    for n in (1, 2, 3):
        simulator.control.add_event(f"{CASE}{n:02d}", f"{EVENT}{n:02d}")
    one = _request(1, run_id="upgrade-run", requested_by="ops@release-1",
                   reason="moved to another day")
    real_store.enqueue(f"{JOB}01", one, TaskMessage(REALTIME_QUEUE, V1_JOB_MESSAGE, f"{JOB}01"),
                       queue=REALTIME_QUEUE)
    # the bulk jobs recorded one by one (their own messages set aside), then the old batch
    for n, reason in ((2, "duplicate booking"), (3, None)):
        request = _request(n, run_id="upgrade-bulk", requested_by="ops@release-1",
                           **({"reason": reason} if reason else {}))
        real_store.enqueue(f"{JOB}{n:02d}", request,
                           TaskMessage("upgrade-test:set-aside", "{}", f"{JOB}{n:02d}"),
                           queue=BULK_QUEUE)
    real_store.redis.lpush(BULK_QUEUE, V1_BATCH_MESSAGE)
    start_worker()
    for n in (1, 2, 3):
        job_id = f"{JOB}{n:02d}"
        record = wait_for(lambda: _settled(real_store, job_id), timeout=30)  # noqa: B023
        assert record.outcome == "cancelled", record
        assert record.requested_by == "ops@release-1"
        assert len(record.attempts) == 1
    assert real_store.get(f"{JOB}01").run_id == "upgrade-run"  # type: ignore[union-attr]
    assert real_store.get(f"{JOB}02").reason == "duplicate booking"  # type: ignore[union-attr]
