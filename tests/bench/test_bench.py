"""The benchmark suite's own pieces: its command line, its fake API, its parsing.

No timings are asserted here: the numbers are for docs/benchmarks.md, written by
`python -m bench`, never for a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.footprint import pattern
from bench.harness import Checkout
from bench.profile import top_frames
from bench.results import Results, percentile

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC_OK = {"status": 200, "success": True, "message": "Calendar event cancelled successfully",
           "data": {"success": True}}
CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
BODY = {"action": "CANCEL_CALENDAR_EVENT",
        "calendar": {"id": "987fcdeb-51a2-43d7-9876-543210fedcba"}}


def test_help_lists_the_options() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, text=True,
                         capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    for option in ("--quick", "--repeats", "--checkout", "--only", "--profile"):
        assert option in out.stdout


def test_an_unknown_scenario_is_one_line_error() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, text=True,
                         capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 2
    assert "--only: unknown scenario(s) nope" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    pytest.importorskip("aiohttp")
    from bench.fake_control import spawn_fake_api

    fake = spawn_fake_api(0)
    try:
        yield fake.url
    finally:
        fake.stop()


def test_the_fake_api_answers_the_spec_body(fake_url: str) -> None:
    response = httpx.post(f"{fake_url}/api/v1/cases/{CASE}", json=BODY,
                          headers={"cv-api-key": "k"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == SPEC_OK


def test_the_fake_api_wants_a_key_and_can_fail_on_demand(fake_url: str) -> None:
    missing = httpx.post(f"{fake_url}/api/v1/cases/{CASE}", json=BODY)
    assert missing.status_code == 401
    assert missing.json()["message"] == "Invalid or missing API key"
    httpx.post(f"{fake_url}/_bench/config", json={"status": 500}).raise_for_status()
    try:
        failed = httpx.post(f"{fake_url}/api/v1/cases/{CASE}", json=BODY,
                            headers={"cv-api-key": "k"})
        assert failed.status_code == 500
    finally:
        httpx.post(f"{fake_url}/_bench/config", json={"status": 200}).raise_for_status()


def test_the_script_baseline_reports_its_calls(fake_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.scripts", "--mode", "shared", "--url", fake_url,
         "--jobs", "50"], cwd=ROOT, text=True, capture_output=True, check=True)
    result = json.loads(out.stdout)
    assert result["jobs"] == 50 and result["failures"] == 0
    assert result["seconds"] > 0 and result["cpu_seconds"] > 0


def test_cancelq_is_run_as_the_checkout_declares_it() -> None:
    argv = Checkout(ROOT).cancelq_argv()
    out = subprocess.run([*argv, "--help"], cwd=ROOT, text=True, capture_output=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert "bulk" in out.stdout


def test_key_patterns_group_one_job_keys() -> None:
    job = "0b6f8f1e-7c4a-4b0e-9d7e-2f1c3a4b5c6d"
    assert pattern(f"c360:job:{job}:attempts") == "c360:job:{id}:attempts"
    assert pattern(f"c360:pair:{job}:{job}") == "c360:pair:{id}:{id}"
    assert pattern("c360:calls:1764590000") == "c360:calls:{n}"
    assert pattern("c360:idx:all") == "c360:idx:all"


def test_top_frames_count_own_and_inclusive_samples(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "thread (1);run (threading.py:10);task (worker/tasks.py:5);post (httpx/_client.py:9) 3\n"
        "thread (1);run (threading.py:10);task (worker/tasks.py:6) 1\n"
    )
    frames = top_frames(raw)
    assert frames["samples"] == [("all", 4)]
    assert frames["self"][0] == ("post (httpx/_client.py)", 75.0)
    assert ("task (worker/tasks.py)", 100.0) in frames["total"]
    assert all("threading.py" not in name for name, _ in frames["total"])


def test_results_take_medians_and_percentiles() -> None:
    results = Results()
    for value in (3.0, 1.0, 2.0):
        results.add("t", "row", "jobs/s", value)
    assert results.median("t", "row", "jobs/s") == 2.0
    assert results.median("t", "row", "other") is None
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
