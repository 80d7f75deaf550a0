"""The one retry policy (`cancelq.pipeline.retry_policy`): its rules, and that nobody else
decides a retry's delay or budget."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cancelq.core.settings import load_settings
from cancelq.pipeline.retry_policy import Dead, Retry, RetryPolicy
from tests.conftest import ROOT

POLICY = RetryPolicy(max_attempts=3, base_seconds=1.0, max_seconds=10.0)


def test_the_budget_ends_in_dead_unless_the_call_was_spared() -> None:
    assert POLICY.after_failure(1, 1, rand=lambda: 1.0) == Retry(1.0)
    assert POLICY.after_failure(2, 2, rand=lambda: 1.0) == Retry(2.0)
    assert POLICY.after_failure(3, 3) == Dead()
    # a failed probe of the open breaker: attempt 7, budget spent, still retried
    assert POLICY.after_failure(7, 3, spared=True, rand=lambda: 1.0) == Retry(10.0)


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 1.0), (1, 1.0), (3, 4.0), (60, 10.0)])
def test_full_jitter_under_a_capped_ceiling(attempt: int, ceiling: float) -> None:
    assert POLICY.delay(attempt, rand=lambda: 1.0) == ceiling
    assert POLICY.delay(attempt, rand=lambda: 0.0) == 0.0
    assert POLICY.delay(attempt, rand=lambda: 0.123456) == round(ceiling * 0.123456, 3)


def test_retry_after_wins_but_never_past_the_cap() -> None:
    assert POLICY.after_failure(1, 1, retry_after=7.5) == Retry(7.5)
    assert POLICY.after_failure(1, 1, retry_after=3600.0) == Retry(10.0)


def test_it_comes_from_the_one_settings_object() -> None:
    settings = load_settings(CANCEL_MAX_ATTEMPTS=7, CANCEL_RETRY_BASE_SECONDS=0.5,
                             CANCEL_RETRY_MAX_SECONDS=20)
    assert RetryPolicy.from_settings(settings) == RetryPolicy(7, 0.5, 20.0)


#: what decides a retry: the backoff's functions and the settings of the budget and delays
_DECIDERS = {"next_delay", "compute_backoff", "max_attempts", "retry_base_seconds",
             "retry_max_seconds"}
#: where they may be named: their definitions and the policy
_HOMES = {"cancelq/core/backoff.py", "cancelq/core/settings.py",
          "cancelq/pipeline/retry_policy.py"}


def _named(path: Path) -> set[str]:
    """The deciders a module calls or reads (`next_delay(...)`, `settings.max_attempts`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in _DECIDERS:
            found.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in _DECIDERS:
            found.add(node.id)
        elif isinstance(node, ast.ImportFrom):
            found.update(alias.name for alias in node.names if alias.name in _DECIDERS)
    return found


def test_no_module_but_the_policy_decides_a_retry() -> None:
    """The attempt, the batch and the reaper ask the policy; none computes a delay or reads
    the budget itself (`max_attempts` as a keyword the store passes on to Lua is fine)."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(names)
        for folder in ("cancelq", "worker", "producers", "web")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in _HOMES
        and (names := _named(path) - {"max_attempts"} | _reads_budget(path))
    }
    assert offenders == {}


def _reads_budget(path: Path) -> set[str]:
    """`settings.max_attempts` read outside the policy (a parameter named so is not)."""
    return {
        "settings.max_attempts"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "max_attempts"
        and isinstance(node.value, ast.Attribute | ast.Name)
        and (node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id)
        == "settings"
    }
