"""Signing in, sessions, CSRF and roles, through the real app in-process."""

from __future__ import annotations

import base64
import time

import pytest
from fastapi.testclient import TestClient

from cancelq.store.audit import AuditStore
from tests.producers.seed import seed
from tests.web.conftest import PASSWORDS, csrf_of, sign_in
from web.auth import SESSION_COOKIE
from web.throttle import LIMIT, Throttle


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("path", ["/", "/jobs", "/dead", "/runs", "/jobs/abcd1234", "/runs/x"])
def test_every_page_asks_to_sign_in_first(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


def test_sign_in_sets_an_httponly_samesite_cookie_and_returns_where_it_was(
    client: TestClient,
) -> None:
    form = client.get("/login?next=/dead")
    answer = client.post("/login", follow_redirects=False, data={
        "name": "ada", "password": PASSWORDS["ada"], "csrf_token": csrf_of(form.text),
        "next": "/dead"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dead"
    cookie = answer.headers["set-cookie"].lower()
    assert SESSION_COOKIE in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http here; https requests get Secure


def test_a_wrong_password_or_name_is_refused_alike(client: TestClient) -> None:
    for name, password in (("ada", "nope"), ("nobody", PASSWORDS["ada"])):
        form = client.get("/login")
        answer = client.post("/login", data={"name": name, "password": password,
                                             "csrf_token": csrf_of(form.text)})
        assert answer.status_code == 401 and "wrong name or password" in answer.text
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_without_the_forms_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"name": "ada", "password": PASSWORDS["ada"]})
    assert answer.status_code == 403 and "CSRF" in answer.text


def test_signing_in_returns_to_the_page_asked_for_with_its_filters(client: TestClient) -> None:
    asked = client.get("/jobs?state=dead&run=r%201", follow_redirects=False)
    assert asked.headers["location"] == "/login?next=/jobs%3Fstate%3Ddead%26run%3Dr%25201"
    form = client.get(asked.headers["location"])
    answer = client.post("/login", follow_redirects=False, data={
        "name": "bob", "password": PASSWORDS["bob"], "csrf_token": csrf_of(form.text),
        "next": "/jobs?state=dead&run=r%201"})
    assert answer.headers["location"] == "/jobs?state=dead&run=r%201"


def test_next_never_leaves_the_console(client: TestClient) -> None:
    form = client.get("/login")
    answer = client.post("/login", follow_redirects=False, data={
        "name": "ada", "password": PASSWORDS["ada"], "csrf_token": csrf_of(form.text),
        "next": "//evil.example/x"})
    assert answer.headers["location"] == "/"


def test_a_tampered_cookie_is_no_session(client: TestClient) -> None:
    sign_in(client, "ada")
    value = client.cookies[SESSION_COOKIE]
    client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_out_needs_its_token_and_ends_the_session(client: TestClient) -> None:
    token = sign_in(client, "ada")
    assert client.post("/logout", data={}).status_code == 403
    answer = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_replay_needs_the_operator_role_and_the_csrf_token(
    client: TestClient, fake_store: AuditStore
) -> None:
    dead = seed(fake_store).dead
    token = sign_in(client, "bob")
    page = client.get(f"/jobs/{dead}")
    assert "Replay</button>" not in page.text and "needs the operator role" in page.text
    refused = client.post(f"/jobs/{dead}/replay", data={"csrf_token": token})
    assert refused.status_code == 403 and "viewer" in refused.text
    client.post("/logout", data={"csrf_token": token})
    token = sign_in(client, "ada")
    assert client.post(f"/jobs/{dead}/replay", data={}).status_code == 403
    assert client.post(f"/jobs/{dead}/replay", data={"csrf_token": "x" * 43}).status_code == 403
    assert fake_store.get(dead).state.value == "dead"  # type: ignore[union-attr]
    done = client.post(f"/jobs/{dead}/replay", data={"csrf_token": token})
    assert done.status_code == 200 and "Replayed: the job is back on its queue" in done.text
    record = fake_store.get(dead)
    assert record is not None and record.state.value == "queued"
    assert record.attempts[-1].verdict == "replayed"
    assert "ada (web)" in (record.attempts[-1].error or "")


def test_the_api_takes_basic_auth_or_the_session_and_says_401_otherwise(
    client: TestClient,
) -> None:
    answer = client.get("/api/v1/jobs")
    assert answer.status_code == 401 and answer.json() == {
        "detail": "sign in: HTTP Basic with a console user"}
    assert answer.headers["www-authenticate"] == 'Basic realm="cancelq"'
    assert client.get("/api/v1/jobs", headers=basic("ada", "wrong")).status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Basic !!"}).status_code == 401
    assert client.get("/api/v1/jobs", headers=basic("bob", PASSWORDS["bob"])).status_code == 200
    sign_in(client, "ada")
    assert client.get("/api/v1/jobs").status_code == 200


def test_failed_sign_ins_are_throttled_per_name_and_client(client: TestClient) -> None:
    for _ in range(LIMIT):
        form = client.get("/login")
        answer = client.post("/login", data={"name": "ada", "password": "guess",
                                             "csrf_token": csrf_of(form.text)})
        assert answer.status_code == 401
    form = client.get("/login")
    refused = client.post("/login", data={"name": "ada", "password": PASSWORDS["ada"],
                                          "csrf_token": csrf_of(form.text)})
    assert refused.status_code == 429 and "too many failed sign-ins for ada" in refused.text
    assert client.get("/api/v1/jobs", headers=basic("ada", PASSWORDS["ada"])).status_code == 429
    assert client.get("/api/v1/jobs", headers=basic("bob", PASSWORDS["bob"])).status_code == 200


def test_the_throttle_forgets_failures_outside_its_window_and_after_a_success() -> None:
    throttle = Throttle(limit=2, window=0.2)
    throttle.failed("ada", "10.0.0.1")
    throttle.failed("ada", "10.0.0.1")
    assert throttle.wait_seconds("ada", "10.0.0.1") > 0
    assert throttle.wait_seconds("ada", "10.0.0.2") == 0  # another client
    time.sleep(0.25)
    assert throttle.wait_seconds("ada", "10.0.0.1") == 0
    throttle.failed("ada", "10.0.0.1")
    throttle.succeeded("ada", "10.0.0.1")
    throttle.failed("ada", "10.0.0.1")
    assert throttle.wait_seconds("ada", "10.0.0.1") == 0
