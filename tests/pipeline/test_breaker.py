"""`cancelq.pipeline.breaker.BreakerGate` on fakeredis: two gates on one Redis are two workers."""

from __future__ import annotations

import logging
import time

import fakeredis
import pytest
import redis

from cancelq.core.contract import CancelRequest
from cancelq.core.settings import load_settings
from cancelq.pipeline.breaker import BreakerGate, breaker_gate
from cancelq.pipeline.gates import Defer, Proceed
from cancelq.store.audit import AuditStore, FinishCall

REQUEST = CancelRequest.parse(case_id="a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                              event_id="987fcdeb-51a2-43d7-9876-543210fedcba")


def gate(store: AuditStore, *, failures: int = 3, window: float = 30.0,
         probe: float = 0.2) -> BreakerGate:
    return BreakerGate(store.scripts, store.keys.prefix, failures=failures,
                       window_seconds=window, probe_seconds=probe, call_timeout_seconds=0.1,
                       rand=lambda: 0.0)


def state(r: fakeredis.FakeRedis) -> str | None:
    return r.hget("t:breaker", "state")  # type: ignore[return-value]


def fail(g: BreakerGate, times: int, status: int | None = 503) -> None:
    for _ in range(times):
        g.after_answer("j", status, None)


def test_opens_after_n_consecutive_transient_failures(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    a, b = gate(fake_store), gate(fake_store)
    assert a.before_call("j", REQUEST, "q") == Proceed()
    fail(a, 1, None)  # a connect error or timeout
    fail(b, 1, 502)
    assert a.before_call("j", REQUEST, "q") == Proceed()
    fail(a, 1, 500)
    assert state(fake_redis) == "open"
    assert float(fake_redis.hget("t:breaker", "opened_at") or 0) == pytest.approx(time.time(),
                                                                                   abs=5)
    for g in (a, b):
        verdict = g.before_call("j", REQUEST, "q")
        assert isinstance(verdict, Defer) and 0 < verdict.seconds <= 0.2


def test_a_final_answer_or_the_window_ends_the_streak(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    g = gate(fake_store)
    fail(g, 2)
    g.after_answer("j", 400, "event_not_found")  # Care360 answered: it is up
    fail(g, 2)
    assert state(fake_redis) == "closed"
    short = gate(fake_store, window=0.05)
    short.after_answer("j", 200, "cancelled")
    fail(short, 2)
    time.sleep(0.1)
    fail(short, 1)  # a new streak: 1, not 3
    assert state(fake_redis) == "closed"


def test_429_and_odd_answers_neither_open_nor_close_it(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    g = gate(fake_store)
    for _ in range(5):
        g.after_answer("j", 429, None)
        g.after_answer("j", 200, None)  # a 2xx without the success body
    assert fake_redis.hget("t:breaker", "failures") in (None, "0")


def test_one_probe_at_a_time_then_closed_on_success(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cancelq.breaker")
    a, b = gate(fake_store), gate(fake_store)
    fail(a, 3)
    assert isinstance(a.before_call("j", REQUEST, "q"), Defer)
    time.sleep(0.25)  # a probe interval
    assert a.before_call("j1", REQUEST, "q") == Proceed(probe=True)
    assert state(fake_redis) == "half_open"
    assert isinstance(b.before_call("j2", REQUEST, "q"), Defer)  # one probe, not two
    a.after_answer("j1", 200, "cancelled")
    assert state(fake_redis) == "closed"
    assert b.before_call("j2", REQUEST, "q") == Proceed()
    b.after_answer("j2", 200, "cancelled")  # a second success changes nothing, logs nothing
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == [
        "circuit breaker open", "circuit breaker half_open", "circuit breaker closed"]


def test_a_failed_probe_opens_it_for_another_interval(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    g = gate(fake_store)
    fail(g, 3)
    time.sleep(0.25)
    assert g.before_call("j", REQUEST, "q") == Proceed(probe=True)
    fail(g, 1, None)
    assert state(fake_redis) == "open"
    assert isinstance(g.before_call("j", REQUEST, "q"), Defer)
    time.sleep(0.25)
    assert g.before_call("j", REQUEST, "q") == Proceed(probe=True)


def test_a_probe_that_never_reports_is_taken_over(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    g = gate(fake_store)  # lock: max(probe 0.2, timeout 0.1 + 1) = 1.1 s
    fail(g, 3)
    time.sleep(0.25)
    assert g.before_call("j1", REQUEST, "q") == Proceed(probe=True)  # then its worker dies
    assert isinstance(g.before_call("j2", REQUEST, "q"), Defer)
    time.sleep(1.2)
    assert g.before_call("j2", REQUEST, "q") == Proceed(probe=True)


def test_off_when_failures_is_zero(fake_store: AuditStore) -> None:
    settings = load_settings(CARE360_BREAKER_FAILURES=0)
    assert breaker_gate(fake_store, settings) is None
    assert breaker_gate(fake_store, load_settings()) is not None


def test_an_owed_success_goes_before_this_process_s_next_failure(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    """A success rides on the next finish; a failure of the same process that comes first
    carries it, so Redis sees success then failure, not the other way round."""
    a, b = gate(fake_store), gate(fake_store).ride_on(fake_store)
    fail(a, 2)
    b.after_answer("j", 200, "cancelled")  # owed: no finish yet
    assert fake_redis.hget("t:breaker", "failures") == "2"
    fail(b, 1)
    assert (state(fake_redis), fake_redis.hget("t:breaker", "failures")) == ("closed", "1")
    b.after_answer("j", 200, "cancelled")
    fake_store.finish_many([FinishCall("nobody", None, "settle", "o", "cancelled")])
    assert fake_redis.hget("t:breaker", "failures") == "0"  # the finish carried it
    fail(a, 2)
    assert state(fake_redis) == "closed"


def test_an_owed_success_whose_finish_failed_is_still_owed(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = gate(fake_store), gate(fake_store).ride_on(fake_store)
    fail(a, 2)
    b.after_answer("j", 200, "cancelled")
    finish = [FinishCall("nobody", None, "settle", "o", "cancelled")]
    with monkeypatch.context() as patched:
        patched.setattr(redis.client.Pipeline, "execute", _connection_lost)
        with pytest.raises(redis.ConnectionError):
            fake_store.finish_many(finish)  # Redis away: neither the finish nor the success
    assert fake_redis.hget("t:breaker", "failures") == "2"
    fake_store.finish_many(finish)  # the next finish carries it
    assert fake_redis.hget("t:breaker", "failures") == "0"


def _connection_lost(*_args: object, **_kwargs: object) -> None:
    raise redis.ConnectionError("gone")
