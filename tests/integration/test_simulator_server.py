"""The simulator as a real server: the CLI in a subprocess, and the in-thread runner."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import simulator
from simulator import (
    BackgroundSimulator,
    SimState,
    SimulatorConfig,
    SimulatorControl,
    SimulatorControlError,
    simulator_command,
)

pytestmark = pytest.mark.integration

SOURCE_ROOT = Path(simulator.__file__).resolve().parents[1]
"""Where the ``simulator`` package under test lives, for the subprocess's import path."""
KEY = "server-test-key"
CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"
OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)
ALREADY = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event has already been cancelled"}'
)


class Simulator:
    """``python -m simulator`` in a subprocess, its URL read from the 'listening' line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--port", "0", *args],
            cwd=SOURCE_ROOT,
            env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=15)
        line = self.proc.stdout.readline() if ready else ""
        prefix = "simulator listening on "
        if not line.startswith(prefix):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"no listening line: {line!r}; stderr: {err}")
        self.url = line[len(prefix) :].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def cancel(client: httpx.Client, url: str, event_id: str = EVENT, key: str = KEY) -> httpx.Response:
    return client.post(
        f"{url}/api/v1/cases/{CASE}",
        json={"action": "CANCEL_CALENDAR_EVENT", "calendar": {"id": event_id}},
        headers={"cv-api-key": key},
    )


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    sim = Simulator("--api-key", KEY)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(server: Simulator) -> Iterator[SimulatorControl]:
    with SimulatorControl(server.url) as control:
        control.reset(state=True)
        yield control


def test_cancel_then_already_cancelled_over_http(server: Simulator, sim: SimulatorControl) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    sim.add_event(CASE, EVENT)
    with httpx.Client() as client:
        first = cancel(client, server.url)
        second = cancel(client, server.url)
        wrong_key = cancel(client, server.url, key="nope")
    assert (first.status_code, first.content) == (200, OK)
    assert first.headers["content-type"] == "application/json"
    assert (second.status_code, second.content) == (400, ALREADY)
    assert wrong_key.status_code == 401
    assert sim.event(EVENT) == {
        "case_id": CASE,
        "event_id": EVENT,
        "agent_name": "custom",
        "cancelled": True,
    }
    assert sim.stats()["by_status"] == {"200": 1, "400": 1, "401": 1}
    assert [c["status"] for c in sim.calls(EVENT)] == [200, 400, 401]


def test_control_client_round_trip(server: Simulator, sim: SimulatorControl) -> None:
    assert sim.health()
    assert sim.event(EVENT) is None
    second = "987fcdeb-51a2-43d7-9876-543210fedcbb"
    assert sim.add_events([{"case_id": CASE, "event_id": second, "agent_name": "zoom"}]) == 1
    assert sim.state() == {
        "cases": [{"id": CASE, "events": [{"id": second, "agentName": "zoom", "isDeleted": False}]}]
    }
    assert sim.set_faults(throttle_rate=1.0, retry_after=4)["retry_after"] == 4
    assert sim.faults()["throttle_rate"] == 1.0
    assert sim.script(second, [500, {"status": 503, "retry_after": 1}, "hang"]) == 3
    with pytest.raises(SimulatorControlError) as bad:
        sim.set_faults(error_rate=2.0)
    assert bad.value.status == 400 and "error_rate" in str(bad.value)
    sim.reset()
    assert sim.faults()["throttle_rate"] == 0.0
    assert sim.event(second) is not None


def test_hung_request_is_dropped_when_the_client_gives_up(
    server: Simulator, sim: SimulatorControl
) -> None:
    sim.add_event(CASE, EVENT)
    sim.script(EVENT, ["hang"])
    with httpx.Client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            cancel(client, server.url)
        deadline = time.monotonic() + 5
        while sim.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.calls(EVENT)[0]["status"] == 499
        state = sim.event(EVENT)
        assert state is not None and state["cancelled"] is False
        assert cancel(client, server.url).status_code == 200


def test_seed_file_env_key_and_sigterm_stop_cleanly(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"cases": [{"id": CASE, "events": [{"id": EVENT}]}]}))
    proc = Simulator("--seed", str(seed), "--hang-rate", "1", env={"SIMULATOR_API_KEY": "from-env"})
    try:
        # A request hanging for an hour must not keep the server from stopping.
        hung = threading.Thread(target=_post_quietly, args=(proc.url,), daemon=True)
        hung.start()
        with SimulatorControl(proc.url) as control:
            deadline = time.monotonic() + 5
            while control.stats()["in_flight"] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert control.stats()["in_flight"] == 1
            control.set_faults(hang_rate=0)
            with httpx.Client() as client:
                assert cancel(client, proc.url, key=KEY).status_code == 401
                assert cancel(client, proc.url, key="from-env").content == OK
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 6
        out, err = proc.proc.communicate(timeout=5)
        assert "from-env" not in out + err
    finally:
        proc.stop()


def test_sigint_stops_cleanly() -> None:
    proc = Simulator()
    try:
        with SimulatorControl(proc.url) as control:
            assert control.health()
        proc.proc.send_signal(signal.SIGINT)
        assert proc.proc.wait(timeout=10) == 0
    finally:
        proc.stop()


def _post_quietly(url: str) -> None:
    with httpx.Client(timeout=30) as client:
        try:
            cancel(client, url, key="from-env")
        except httpx.HTTPError:
            pass


def test_background_simulator_serves_and_stops() -> None:
    state = SimState()
    state.upsert_event(CASE, EVENT)
    with BackgroundSimulator(SimulatorConfig(api_key=KEY), state=state) as running:
        with httpx.Client() as client:
            assert cancel(client, running.base_url).content == OK
        assert running.app.log.by_status[200] == 1
        url = running.base_url
    with SimulatorControl(url, timeout=1) as control:
        assert not control.health()
        with pytest.raises(TimeoutError):
            control.wait_ready(timeout=0.2)


def test_auto_create_and_generate_from_the_command_line() -> None:
    proc = Simulator("--auto-create", "--generate", "2", "--events-per-case", "2")
    try:
        with SimulatorControl(proc.url) as control, httpx.Client() as client:
            control.wait_ready()
            cases = control.state()["cases"]
            assert [len(c["events"]) for c in cases] == [2, 2]
            assert cancel(client, proc.url, key="sim-key").content == OK  # auto-created
            assert control.event(EVENT) == {
                "case_id": CASE,
                "event_id": EVENT,
                "agent_name": "custom",
                "cancelled": True,
            }
    finally:
        proc.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["--error-rate", "0.6", "--hang-rate", "0.6"],
        ["--throttle-status", "500"],
        ["--error-rate", "1.5"],
        ["--seed", "/nonexistent/seed.json"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(simulator_command, args)
    assert result.exit_code == 2, result.output


def test_bad_seed_file_is_a_usage_error(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text('{"cases": [{"id": "nope"}]}')
    result = CliRunner().invoke(simulator_command, ["--seed", str(seed)])
    assert result.exit_code == 2
    assert "case id must be a UUID" in result.output
