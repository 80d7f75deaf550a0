"""The overview's chart drawn as shapes, and the jobs filters read from a query string."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cancelq.core.errors import InvalidInput
from cancelq.ops.stats import MinuteCalls
from web.chart import HEIGHT, draw, status_class
from web.filters import JobFilters, parse_time


def test_bars_stack_by_status_class_and_scale_to_the_busiest_minute() -> None:
    minutes = [MinuteCalls(60.0 * m, counts) for m, counts in enumerate(
        [{}, {"200": 30, "503": 10}, {"none": 5, "429": 5, "200": 10}])]
    chart = draw(minutes)
    assert chart.peak == 40 and chart.total == 60
    busiest = [bar for bar in chart.bars if "x30" in bar.title]
    assert [bar.css for bar in busiest] == ["s2xx", "s5xx"]
    assert busiest[0].y + busiest[0].height == HEIGHT - 20  # on the base line
    assert busiest[1].y == pytest.approx(chart.top)  # the tallest reaches the top
    assert [bar.css for bar in chart.bars if "x10" in bar.title and "none" in bar.title] == [
        "s2xx", "s4xx", "snone"]
    assert chart.legend == (("s2xx", "200", 40), ("s4xx", "429", 5), ("s5xx", "503", 10),
                            ("snone", "none", 5))
    assert (chart.first_label, chart.last_label) == ("00:00", "00:02")
    assert draw([]).bars == () and draw([MinuteCalls(0.0, {})]).peak == 0
    assert status_class("none") == "snone" and status_class("abc") == "snone"


def test_times_are_iso_in_utc_or_relative() -> None:
    assert parse_time("2026-12-01T09:00", "since") == datetime(2026, 12, 1, 9, tzinfo=UTC
                                                                 ).timestamp()
    assert parse_time("2026-12-01T09:00Z", "since") == parse_time("2026-12-01T10:00+01:00", "x")
    assert parse_time("2h", "since", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("1.5d", "since", now=200_000.0) == 200_000.0 - 129_600
    assert parse_time("  ", "since") is None
    with pytest.raises(InvalidInput, match="^since: not a time"):
        parse_time("yesterday", "since")


def test_filters_check_every_value_before_any_key_is_built() -> None:
    case = "3f2a9c1e-0000-4000-8000-000000000001"
    query = JobFilters(case=case.upper(), state="dead", run="r1").query(10)
    assert (query.case_id, query.state, query.run_id, query.limit) == (case, "dead", "r1", 10)
    for bad, field in ((JobFilters(event="x"), "event"), (JobFilters(outcome="nope"), "outcome"),
                       (JobFilters(state="gone"), "state"), (JobFilters(run="r" * 201), "run")):
        with pytest.raises(InvalidInput) as caught:
            bad.query(10)
        assert caught.value.field == field
    assert JobFilters(case="c", outcome="").params() == {"case": "c"}
