"""`cancelq.store.scripts`: one schema for two languages, checked from both sides.

Every key, counter field and lifecycle name the Lua scripts use comes from the generated
prelude; these tests run small Lua bodies through the registry on fakeredis (with its Lua)
and compare what they build with what Python builds, kind by kind.
"""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import fakeredis
import pytest

from cancelq.core import lifecycle
from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.keys import COUNTERS, LAYOUT, Keys, counter, template_fields
from cancelq.store.records import ATTEMPT_FIELDS, Attempt, read_stored_attempt, stored_attempt
from cancelq.store.scripts import (
    SCRIPT_NAMES,
    Scripts,
    lua_string,
    prelude,
    source,
    vocabulary,
    with_library,
)

#: what Lua must see of `cancelq.core.lifecycle`, table by table
LIFECYCLE = {
    "STATE": {m.name: m.value for m in lifecycle.State},
    "OUTCOME": {m.name: m.value for m in lifecycle.Outcome},
    "DECISION": {v.upper(): v for v in get_args(lifecycle.Decision)},
    "BEGIN_VERDICT": {v.upper(): v for v in get_args(lifecycle.BeginVerdict)},
    "VERDICT": {m.name: m.value for m in lifecycle.Verdict},
    "BREAKER": {m.name: m.value for m in lifecycle.BreakerState},
}
#: awkward on purpose: separators, braces, quotes, a backslash, non-ASCII
ODD = "a:b {c} 'd' \"e\" \\f caf\u00e9"


def run_lua(client: fakeredis.FakeRedis, body: str, *args: Any) -> Any:
    return client.eval(with_library(body), 0, *args)


def sample_names(template: str, value: str = ODD) -> dict[str, str]:
    return {name: f"{name}-{value}" for name in template_fields(template)}


def python_key(keys: Keys, kind: str, names: dict[str, str]) -> str:
    member = getattr(keys, kind)
    return member(**names) if callable(member) else str(member)


@pytest.mark.parametrize("kind", sorted(LAYOUT))
def test_every_key_kind_is_the_same_key_in_lua_and_python(
    fake_redis: fakeredis.FakeRedis, kind: str
) -> None:
    keys = Keys("pre:fix")
    names = sample_names(LAYOUT[kind])
    built = run_lua(fake_redis, "return KEY[ARGV[1]](unpack(ARGV, 2))",
                    kind, keys.prefix, *names.values())
    assert built == python_key(keys, kind, names) == keys.key(kind, **names)


def test_keys_has_a_member_for_every_kind_and_no_other() -> None:
    members = {name for name in dir(Keys) if not name.startswith("_")} - {"prefix", "key", "v1"}
    assert members == set(LAYOUT)


def test_the_key_layout_is_what_deployed_data_uses() -> None:
    """Renaming a key strands every record already stored under it: pin the layout."""
    k = Keys()
    assert [
        k.job("J"), k.lookup, k.schema, k.index_all, k.index_run("R"), k.index_state("queued"),
        k.index_outcome("cancelled"), k.stats, k.run_stats("R"), k.runs, k.delayed,
        k.delayed_messages, k.calls(17), k.auth_blocked, k.rate_limit, k.bulk_turns,
        k.cleanup_lock("f.csv"), k.redbeat, k.delayed_bad, k.leases, k.breaker,
        k.breaker_probe, k.poison,
    ] == [
        "c360:job:J", "c360:lookup", "c360:schema", "c360:idx:all", "c360:idx:run:R",
        "c360:idx:state:queued", "c360:idx:outcome:cancelled", "c360:stats",
        "c360:run:R:stats", "c360:runs", "c360:delayed", "c360:delayed:msg", "c360:calls:17",
        "c360:auth:blocked", "c360:ratelimit", "c360:ratelimit:bulk-turns",
        "c360:cleanup:lock:f.csv", "c360:redbeat", "c360:delayed:bad", "c360:leases",
        "c360:breaker", "c360:breaker:probe", "c360:poison",
    ]
    # v1's own keys, which `cancelq migrate` reads: pinned as deployed v1 stores have them
    assert [k.v1("attempts", job_id="J"), k.v1("pair", case_id="C", event_id="E"),
            k.v1("index_case", case_id="C"), k.v1("index_event", event_id="E"),
            k.v1("expiry")] == ["c360:job:J:attempts", "c360:pair:C:E", "c360:idx:case:C",
                                "c360:idx:event:E", "c360:expiry"]


@pytest.mark.parametrize("kind", sorted(COUNTERS))
def test_every_counter_field_is_the_same_in_lua_and_python(
    fake_redis: fakeredis.FakeRedis, kind: str
) -> None:
    names = sample_names(COUNTERS[kind])
    built = run_lua(fake_redis, "return COUNTER[ARGV[1]](unpack(ARGV, 2))",
                    kind, *names.values())
    assert built == counter(kind, **names)
    assert counter("state", state="dead") == "state:dead"


@pytest.mark.parametrize("table", sorted(LIFECYCLE))
def test_lua_has_every_lifecycle_name_python_defines(
    fake_redis: fakeredis.FakeRedis, table: str
) -> None:
    flat = run_lua(
        fake_redis,
        "local out = {} for k, v in pairs(" + table + ") do out[#out + 1] = k;"
        " out[#out + 1] = v end return out",
    )
    assert dict(zip(flat[0::2], flat[1::2], strict=True)) == LIFECYCLE[table]


@pytest.mark.parametrize("path", [
    "cancelq/core/lifecycle.py", "cancelq/store/scripts.py", "cancelq/store/lua/lib.lua",
])
def test_the_places_that_list_the_lua_tables_list_them_all(path: str) -> None:
    """Three docs list the prelude's tables for a reader of the scripts: all of them."""
    text = (Path(__file__).resolve().parents[2] / path).read_text(encoding="utf-8")
    assert [table for table in vocabulary() if table not in text] == []


def test_lua_strings_survive_any_text(fake_redis: fakeredis.FakeRedis) -> None:
    for text in (ODD, "", "\n\t\x00\x7f", "]]--[["):
        assert run_lua(fake_redis, f"return {lua_string(text)}") == text


@pytest.mark.parametrize("text", [
    "plain", 'quote " and backslash \\', "new\nline\ttab\rret\bbs\fff", "\x01\x1f\x7f", "",
])
def test_json_string_escapes_as_python_does(fake_redis: fakeredis.FakeRedis, text: str) -> None:
    assert run_lua(fake_redis, "return json_string(ARGV[1])", text) == json.dumps(text)


@pytest.mark.parametrize("attempt", [
    Attempt(3, 1795521090.2713985, None, None, "WorkerLost", "the worker stopped", "interrupted"),
    Attempt(1, 1.5, 12.25, 503, "TransientResponse", 'HTTP 503 "busy"', "retry", 2.5),
    Attempt(2, 2.0, 3.0, 400, "FinalAnswer", "Invalid action", "invalid_request",
            raw_body='{"status":400}'),
])
def test_encode_attempt_writes_what_attempt_encode_writes(
    fake_redis: fakeredis.FakeRedis, attempt: Attempt
) -> None:
    values = {name: getattr(attempt, name) for name in ATTEMPT_FIELDS}
    # Lua gets the JSON of each field that has a value; the rest must come out null (or not
    # at all, if optional) by encode_attempt's own rule
    args = [part for name, value in values.items() if value is not None
            for part in (name, json.dumps(value))]
    body = ("local values = {} for i = 1, #ARGV, 2 do values[ARGV[i]] = ARGV[i + 1] end"
            " return encode_attempt(values)")
    assert run_lua(fake_redis, body, *args) == attempt.encode()


def test_the_attempt_lua_closes_is_what_python_would_write(fake_store: AuditStore) -> None:
    """A worker died mid-attempt: the next begin records it, in `Attempt.encode`'s bytes."""
    request = CancelRequest.parse(case_id="a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                                  event_id="987fcdeb-51a2-43d7-9876-543210fedcba")
    fake_store.begin("j", request, max_attempts=5, queue="q", queue_key="q", now=1795521090.25,
                     owner="w1", lease_seconds=0.001)
    time.sleep(0.01)  # the first attempt's lease has ended
    begun = fake_store.begin("j", request, max_attempts=5, queue="q", queue_key="q", now=2.0,
                             owner="w2", lease_seconds=30)
    assert begun.attempt == 2
    lost = Attempt(
        number=1, started_at=1795521090.25, duration_ms=None, http_status=None,
        error_class="WorkerLost", error="the worker stopped before this attempt was recorded",
        verdict=lifecycle.Verdict.INTERRUPTED.value,
    )
    raw: dict[str, str] = fake_store.redis.hgetall(fake_store.keys.job("j"))  # type: ignore[assignment]
    assert {k: v for k, v in raw.items() if re.fullmatch(r"a\d+[a-z]?", k)} \
        == stored_attempt(lost, 1)
    got = fake_store.get("j")
    assert got is not None and got.attempts == (lost,)


STORED = [
    Attempt(1, 1764633600.7106647, 62.2, 200, None, None, "cancelled"),
    Attempt(2, 1764633600.1, None, None, "WorkerLost", "gone", "interrupted"),
    Attempt(3, 17.0, 51.0, 503, "TransientResponse", "HTTP 503", "retry", 0.4, "<html>"),
    Attempt(0, 1e-05, None, None, "NotCalled", ODD + "\n\t\x01 \u2603", "invalid_request"),
    Attempt(4, 1764633600.0, 12.5, 404, "FinalAnswer", None, "event_not_found", None, "{}"),
]


@pytest.mark.parametrize("attempt", STORED)
def test_a_stored_attempt_is_the_same_from_lua_and_python(
    fake_redis: fakeredis.FakeRedis, attempt: Attempt
) -> None:
    """`add_attempt` (Lua, from the JSON a script is given) and `stored_attempt` (Python,
    what the migration writes) store the same fields, and they read back as the attempt."""
    run_lua(fake_redis, "add_attempt(ARGV[1], ARGV[2], ARGV[3]) return 1", "t", "j",
            attempt.encode())
    raw: dict[str, str] = fake_redis.hgetall("t:job:j")  # type: ignore[assignment]
    assert raw == {"A": "1", **stored_attempt(attempt, 1)}
    assert read_stored_attempt(raw, 1) == attempt
    assert all(len(v.encode()) <= 64 for k, v in stored_attempt(STORED[0], 1).items())


def test_every_lua_file_is_a_registered_script() -> None:
    lua = resources.files("cancelq.store").joinpath("lua")
    files = {p.name.removesuffix(".lua") for p in lua.iterdir() if p.name.endswith(".lua")}
    assert files - {"lib"} == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", ["lib", *SCRIPT_NAMES])
def test_no_script_spells_a_lifecycle_name_or_a_key(name: str) -> None:
    """Lifecycle names and keys come from the prelude, never from a literal in Lua."""
    text = resources.files("cancelq.store").joinpath("lua", f"{name}.lua").read_text("utf-8")
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    literals = set(re.findall(r"'([^'\\]*)'", code))
    assert not literals & {v for table in LIFECYCLE.values() for v in table.values()}
    assert not [s for s in literals if s.startswith(":") or s.endswith(":")], name


def test_the_prelude_declares_only_locals() -> None:
    """Redis refuses a script that makes a global: the prelude defines tables and fills them."""
    for line in prelude().splitlines():
        assert line.startswith(("--", "local ", "function KEY.", "function KEY_V1.",
                                "function COUNTER.", "function LOOKUP.")) or not line


def test_a_script_runs_through_the_registry_with_the_library_in_front(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    scripts = Scripts(fake_redis)
    assert scripts("defer", ["t", "j", "0", "q\nmsg"]) == 1
    assert source("defer").startswith(prelude())
    assert fake_redis.zscore(Keys("t").delayed, "j") is not None
    assert fake_redis.hget(Keys("t").delayed_messages, "j") == "q\nmsg"
    assert scripts("promote", ["t", 10, "q"]) == [1]
    assert fake_redis.lrange("q", 0, -1) == ["msg"]


def test_a_started_call_survives_redis_forgetting_its_scripts(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    scripts = Scripts(fake_redis)
    scripts("defer", ["t", "j", "0", "q\nmsg"])  # loaded now
    fake_redis.script_flush()  # as a Redis restart would
    assert scripts.start("promote", ["t", 10, "q"])() == [1]
    assert fake_redis.lrange("q", 0, -1) == ["msg"]
