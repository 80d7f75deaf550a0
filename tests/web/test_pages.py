"""The pages and the API on a seeded store: what they show, escaped, with strict headers."""

from __future__ import annotations

import csv
import io

import pytest
import redis
from fastapi.testclient import TestClient

from cancelq.core.settings import load_settings
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.audit import AuditStore
from tests.conftest import API_KEY
from tests.producers.seed import add_job, finish, seed
from tests.web.conftest import SECRET
from web.app import create_app
from web.headers import CSP

SCRIPT = '<script>alert("x")</script>'


def test_security_headers_on_pages_api_and_static(client: TestClient) -> None:
    for path in ("/login", "/api/v1/jobs", "/static/console.css", "/healthz"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
        assert "unsafe-inline" not in CSP
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_no_page_has_inline_script_or_style(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    seeded = seed(fake_store)
    for path in ("/", "/jobs", f"/jobs/{seeded.dead}", "/dead", "/runs",
                 f"/runs/{seeded.run_id}", "/login"):
        html = client.get(path).text
        assert "<script>" not in html and "style=" not in html and " on" + "click" not in html
        assert '<script src="/static/console.js" defer></script>' in html


def test_a_script_in_a_reason_or_an_answer_renders_as_text(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    job = add_job(fake_store, reason=SCRIPT, run_id="run-<b>")
    finish(fake_store, job, status=400, error=SCRIPT, outcome="invalid_request")
    for path in (f"/jobs/{job}", "/jobs", "/jobs?run=run-<b>"):
        html = client.get(path).text
        assert SCRIPT not in html and "<b>" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert client.get(f"/api/v1/jobs/{job}").json()["reason"] == SCRIPT  # JSON, not HTML


def test_the_job_page_shows_the_record_and_every_attempt(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    seeded = seed(fake_store)
    html = client.get(f"/jobs/{seeded.dead}").text
    assert seeded.dead in html and "retries_exhausted" in html
    assert "HTTP <span class=\"status\">503</span>" in html and "12 ms" in html
    assert "Replay</button>" in html  # an operator, a dead job
    redirected = client.get(f"/jobs/{seeded.dead[:8]}", follow_redirects=False)
    assert redirected.headers["location"] == f"/jobs/{seeded.dead}"
    assert client.get("/jobs/zzzz").status_code == 400
    assert client.get("/jobs/00000000").status_code == 404


def test_jobs_filters_and_search(operator: tuple[TestClient, str], fake_store: AuditStore) -> None:
    client, _ = operator
    seeded = seed(fake_store)
    dead = fake_store.get(seeded.dead)
    assert dead is not None
    listed = client.get("/jobs?state=dead").text
    assert seeded.dead[:8] in listed and seeded.cancelled[:8] not in listed
    found = client.get(f"/search?q={dead.event_id}")
    assert found.url.path == "/jobs" and seeded.dead[:8] in found.text
    assert client.get(f"/search?q={dead.case_id}").url.query.decode().startswith("case=")
    assert client.get(f"/search?q={seeded.dead[:6]}").url.path == f"/jobs/{seeded.dead}"
    assert "no job, event or case" in client.get(
        "/search?q=00000000-0000-4000-8000-000000000000").text
    assert client.get("/jobs?case=not-a-uuid").status_code == 400
    assert client.get("/jobs?since=yesterday").status_code == 400
    assert client.get("/jobs?since=2h&until=2099-01-01T00:00").status_code == 200


def test_overview_counts_and_draws_calls_per_minute(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    seed(fake_store)
    html = client.get("/").text
    assert "Dead letters" in html and "Circuit breaker" in html and "401 block" in html
    assert 'class="s5xx"' in html and 'class="s2xx"' in html and 'class="s4xx"' in html
    assert "(3 calls)" in html
    api = client.get("/api/v1/overview").json()
    assert api["stats"]["dead_letters"] == 1
    assert len(api["calls_per_minute"]) == 60
    assert sum(m["total"] for m in api["calls_per_minute"]) == 3


def test_dead_letters_replay_many_asks_first(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, token = operator
    dead = seed(fake_store).dead
    assert dead[:8] in client.get("/dead?outcome=retries_exhausted").text
    asked = client.post("/dead/replay", data={"csrf_token": token, "all": "1"})
    assert "Confirm replay" in asked.text and "would replay" in asked.text
    assert fake_store.get(dead).state.value == "dead"  # type: ignore[union-attr]
    done = client.post("/dead/replay", data={"csrf_token": token, "job_id": dead,
                                             "confirm": "1"})
    assert "Replayed 1 of 1" in done.text
    assert fake_store.get(dead).state.value == "queued"  # type: ignore[union-attr]
    assert client.post("/dead/replay", data={"job_id": dead}).status_code == 403
    assert client.get("/dead?outcome=cancelled").status_code == 400


def test_runs_page_api_and_csv_export(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    seeded = seed(fake_store, run_id="clinic/42")
    assert "clinic/42" in client.get("/runs").text
    html = client.get("/runs/clinic%2F42").text
    assert 'id="run-bar"' in html and 'data-run="clinic%2F42"' in html
    run = client.get("/api/v1/runs/clinic/42").json()
    assert (run["jobs"], run["done"], run["finished"]) == (3, 2, False)
    assert run["rate_per_second"] is not None and run["eta_seconds"] is not None
    exported = client.get("/export/clinic%2F42")
    assert exported.headers["content-disposition"] == 'attachment; filename="clinic_42.csv"'
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][0] == "job_id" and len(rows) == 4
    assert any(row[8] == "'=cmd|' /C calc'!A0" for row in rows)  # formula-safe
    assert seeded.queued in exported.text
    assert client.get("/api/v1/runs/nope").status_code == 404
    assert client.get("/runs/nope").status_code == 404


def test_api_shapes_are_the_clis_json(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    seeded = seed(fake_store)
    job = client.get(f"/api/v1/jobs/{seeded.dead[:8]}").json()
    assert job == {**fake_store.get(seeded.dead).to_json(), "source": "redis"}  # type: ignore[union-attr]
    listed = client.get("/api/v1/jobs", params={"state": "dead"}).json()
    assert [j["job_id"] for j in listed] == [seeded.dead] and listed[0]["attempts"]
    dead = fake_store.get(seeded.dead)
    assert dead is not None
    by_event = client.get("/api/v1/jobs", params={"event_id": dead.event_id}).json()
    assert [j["job_id"] for j in by_event] == [seeded.dead]
    letters = client.get("/api/v1/dead-letters").json()
    assert letters[0]["job_id"] == seeded.dead and letters[0]["why"].startswith("HTTP 503")
    assert client.get("/api/v1/jobs", params={"case_id": "x"}).json()["detail"].startswith(
        "invalid case")
    assert client.get("/api/v1/jobs", params={"outcome": "nope"}).status_code == 422
    assert client.get("/api/v1/jobs/ffff0000").status_code == 404
    assert client.get("/api/v1/runs").json()[0]["run_id"] == seeded.run_id


def test_the_api_key_appears_in_no_page_and_no_answer(
    fake_store: AuditStore, web_users: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CV_API_KEY", API_KEY)
    settings = load_settings(WEB_USERS=web_users, WEB_SECRET=SECRET)
    assert settings.api_key is not None
    seeded = seed(fake_store)
    with TestClient(create_app(settings, ReadThrough(fake_store, None))) as client:
        from tests.web.conftest import sign_in

        sign_in(client, "ada")
        paths = ["/", "/jobs", f"/jobs/{seeded.dead}", "/dead", "/runs",
                 f"/runs/{seeded.run_id}", "/api/v1/overview", "/api/v1/jobs",
                 "/api/v1/openapi.json", "/api/v1/dead-letters", "/api/v1/runs"]
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert API_KEY not in answer.text and SECRET not in answer.text


def test_redis_down_is_a_503_in_one_line(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator

    def down(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Connection refused")

    with pytest.MonkeyPatch.context() as patch:  # undone before fakeredis is flushed
        patch.setattr(fake_store.redis, "execute_command", down)
        patch.setattr(fake_store.redis, "pipeline", down)
        answer = client.get("/api/v1/jobs")
        page = client.get("/")
    assert answer.status_code == 503
    assert answer.json() == {"detail": "Redis unavailable (ConnectionError): try again"}
    assert page.status_code == 503 and "Traceback" not in page.text


def test_the_jobs_csv_is_audit_csv_with_the_same_filters(
    operator: tuple[TestClient, str], fake_store: AuditStore
) -> None:
    client, _ = operator
    seeded = seed(fake_store)
    assert "/jobs.csv?state=dead" in client.get("/jobs?state=dead").text
    answer = client.get("/jobs.csv", params={"run": seeded.run_id})
    assert answer.headers["content-disposition"] == 'attachment; filename="jobs.csv"'
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:3] == ["job_id", "case_id", "event_id"] and len(rows) == 4
    dead = next(row for row in rows if row[0] == seeded.dead)
    assert (dead[3], dead[6]) == ("dead", "503")  # state, the last attempt's status
    assert client.get("/jobs.csv?case=nope").status_code == 400
