"""The console in a real browser (Debian's Chromium, driven by Playwright) against a real
`cancelq web` process, a real worker, the simulator and Redis.

One console, one worker and one browser for the whole module (each test gets a fresh
browser context: its own cookies), so the module costs seconds, not a minute. Every wait
polls for the state it asserts. Screenshots for the README (docs/web-*.png) are written
only once the test that takes them has passed its assertions.

Chromium must be at `/usr/bin/chromium` (`apt-get install -y chromium chromium-driver`,
which `.ci/run` does when it is missing): without it these tests fail, saying so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from cancelq.bulk.runs import run_progress
from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.store.audit import AuditStore
from producers.dev.local_redis import LocalRedis, free_port
from producers.enqueue import enqueue_cancellation
from tests.conftest import (
    API_KEY,
    ROOT,
    Simulator,
    WorkerProcess,
    spawn_worker,
    stop_process,
    wait_for,
    wait_for_http,
    worker_env,
)
from tests.web.conftest import PASSWORDS, SECRET, users_text

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
DOCS = ROOT / "docs"
SCRIPT = '<script>alert("x")</script>'
TIMEOUT_MS = 30_000


@dataclass
class Live:
    url: str
    store: AuditStore
    simulator: Simulator
    worker: WorkerProcess
    env: dict[str, str]


@pytest.fixture(scope="module")
def live(
    redis_server: LocalRedis, simulator_process: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """Redis flushed once, the worker (2 attempts a job: a 503 twice is dead), the console."""
    raw = redis.Redis.from_url(redis_server.url)
    raw.flushall()
    simulator_process.control.reset(state=True)
    logs = tmp_path_factory.mktemp("web")
    env = worker_env(redis_server.url, simulator_process.url, CANCEL_MAX_ATTEMPTS="2")
    worker = spawn_worker(env, logs / "worker.log", "web")
    url = f"http://127.0.0.1:{free_port()}"
    log = logs / "web.log"
    web = subprocess.Popen(
        [sys.executable, "-m", "producers.cli", "web"], stdout=log.open("w"),
        stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        env={**env, "WEB_USERS": users_text(), "WEB_SECRET": SECRET,
             "WEB_ADDRESS": url.removeprefix("http://")})
    store = AuditStore(redis.Redis.from_url(redis_server.url, decode_responses=True))
    try:
        wait_for_http(web, f"{url}/healthz", log)
        yield Live(url, store, simulator_process, worker, env)
    finally:
        stop_process(web)
        worker.stop()
        store.close()
        raw.flushall()
        raw.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: "
                    "apt-get install -y chromium chromium-driver")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def signed_in(browser: Browser, live: Live) -> Iterator[dict[str, Page]]:
    """`signed_in["ada"]`: a page of a fresh context, signed in as that user."""
    contexts = []
    pages: dict[str, Page] = {}

    class Pages(dict[str, Page]):
        def __missing__(self, name: str) -> Page:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            contexts.append(context)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{live.url}/")
            page.fill("input[name=name]", name)
            page.fill("input[name=password]", PASSWORDS[name])
            page.click("button:text('Sign in')")
            expect(page.locator("h1")).to_contain_text("Overview")
            self[name] = page
            return page

    yield Pages(pages)
    for context in contexts:
        context.close()


def _pair(live: Live) -> tuple[str, str]:
    case, event = str(uuid.uuid4()), str(uuid.uuid4())
    live.simulator.control.add_event(case, event)
    return case, event


def _state(live: Live, job_id: str) -> str | None:
    record = live.store.get(job_id, with_attempts=False)
    return None if record is None else record.state.value


def _dead_job(live: Live, reason: str) -> str:
    """A job that dies: the simulator answers 503 to both of its attempts."""
    case, event = _pair(live)
    live.simulator.control.script(event, [503, 503])
    job = enqueue_cancellation(case, event, reason=reason, requested_by="support@clinic",
                               store=live.store).job_id
    wait_for(lambda: _state(live, job) == "dead", timeout=30)
    return job


def test_sign_in_search_by_event_open_the_job_and_see_its_attempts(
    live: Live, signed_in: dict[str, Page]
) -> None:
    case, event = _pair(live)
    job = enqueue_cancellation(case, event, reason=SCRIPT, store=live.store).job_id
    wait_for(lambda: _state(live, job) == "settled", timeout=30)
    page = signed_in["ada"]
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    page.fill("input[name=q]", event)
    page.press("input[name=q]", "Enter")
    page.wait_for_url(f"**/jobs?event={event}")
    page.click(f"a[href='/jobs/{job}']")
    page.wait_for_url(f"**/jobs/{job}")
    expect(page.locator("#job-state")).to_have_text("settled")
    timeline = page.inner_text("ol.timeline")
    assert "#1" in timeline and "HTTP 200" in timeline and "cancelled" in timeline
    assert page.inner_text("td.reason") == SCRIPT  # shown as text, never run
    assert dialogs == []
    assert API_KEY not in page.content()


def test_replay_a_dead_job_and_watch_it_settle(
    live: Live, signed_in: dict[str, Page]
) -> None:
    job = _dead_job(live, "patient moved the appointment")
    page = signed_in["ada"]
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation
    page.goto(f"{live.url}/jobs/{job}")
    expect(page.locator("#job-state")).to_have_text("dead")
    page.click("form.replay button")
    expect(page.locator(".flash")).to_contain_text("Replayed")
    # the page refreshes itself until the job settles
    expect(page.locator("#job-state")).to_have_text("settled", timeout=TIMEOUT_MS)
    timeline = page.inner_text("ol.timeline")
    assert timeline.count("TransientResponse: HTTP 503") == 2
    assert "replayed by ada (web)" in timeline and "HTTP 200" in timeline
    page.screenshot(path=str(DOCS / "web-job.png"), full_page=True)


def test_follow_a_bulk_run_to_the_end(live: Live, signed_in: dict[str, Page]) -> None:
    pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(100)]
    live.simulator.control.add_events([{"case_id": c, "event_id": e} for c, e in pairs])
    page = signed_in["bob"]  # a viewer may watch
    rows = [BulkRow(i, c, e, "clinic closed") for i, (c, e) in enumerate(pairs, 1)]
    BulkWriter(live.store, run_id="clinic-42", requested_by="web test", batch_size=10).send(rows)
    page.goto(f"{live.url}/runs/clinic-42")
    assert page.inner_text("#run-status") == "running"  # 100 calls at 20/s: ~5 s
    page.evaluate("window.loadedOnce = true")  # gone if the page were reloaded
    expect(page.locator("#run-status")).to_have_text("finished", timeout=TIMEOUT_MS)
    assert page.evaluate("window.loadedOnce") is True  # the script moved the bar
    assert page.inner_text("#run-percent") == "100.0"
    assert page.get_attribute("#run-bar", "width") == "100"
    assert "cancelled\t100" in page.inner_text("#run-outcomes")
    assert run_progress(live.store, "clinic-42").finished
    page.screenshot(path=str(DOCS / "web-run.png"), full_page=True)
    page.goto(f"{live.url}/")
    assert page.locator("svg.chart rect.s2xx").count() >= 1
    page.screenshot(path=str(DOCS / "web-overview.png"), full_page=True)


def test_a_viewer_cannot_replay_and_no_post_passes_without_its_csrf_token(
    live: Live, signed_in: dict[str, Page]
) -> None:
    job = _dead_job(live, "duplicate booking")
    post = """async ([path, token]) => (await fetch(path, {method: "POST",
        headers: {"content-type": "application/x-www-form-urlencoded"},
        body: token === null ? "" : "csrf_token=" + encodeURIComponent(token)})).status"""
    viewer = signed_in["bob"]
    viewer.goto(f"{live.url}/jobs/{job}")
    assert viewer.locator("form.replay").count() == 0
    assert "needs the operator role" in viewer.inner_text("main")
    token = viewer.input_value("form.who input[name=csrf_token]")
    assert viewer.evaluate(post, [f"/jobs/{job}/replay", token]) == 403
    operator = signed_in["ada"]
    operator.goto(f"{live.url}/jobs/{job}")
    assert operator.evaluate(post, [f"/jobs/{job}/replay", None]) == 403
    assert operator.evaluate(post, [f"/jobs/{job}/replay", "forged"]) == 403
    assert _state(live, job) == "dead"


def test_doctor_finds_the_console_answering_and_closed_to_strangers(live: Live) -> None:
    done = subprocess.run([sys.executable, "-m", "producers.cli", "doctor", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**live.env, "WEB_URL": live.url})
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert checks["web"]["status"] == "ok", checks["web"]
    assert checks["web"]["summary"] == f"{live.url} answers, and refuses anonymous API calls"
