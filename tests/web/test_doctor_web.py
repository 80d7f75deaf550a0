"""`cancelq doctor`'s web check: skipped unless the console is configured; ok only when it
answers and refuses an anonymous API call; a bad configuration fails in one line."""

from __future__ import annotations

import httpx

from cancelq.core.settings import load_settings
from cancelq.ops.doctor import check_web, web_url
from tests.web.conftest import SECRET, users_text


def answering(health: int, anonymous: int) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        status = health if request.url.path == "/healthz" else anonymous
        return httpx.Response(status, text="x")

    return httpx.MockTransport(handle)


def test_not_configured_is_skipped() -> None:
    assert check_web(load_settings()).status == "skip"


def test_the_url_is_web_url_else_web_address_on_loopback() -> None:
    assert web_url(load_settings(WEB_URL="https://ops.example/console/")) == (
        "https://ops.example/console")
    assert web_url(load_settings(WEB_ADDRESS="0.0.0.0:9000")) == "http://127.0.0.1:9000"
    assert web_url(load_settings(WEB_ADDRESS="[::1]:9000")) == "http://[::1]:9000"


def test_ok_only_when_it_answers_and_refuses_anonymous_calls() -> None:
    settings = load_settings(WEB_USERS=users_text(), WEB_SECRET=SECRET)
    good = check_web(settings, answering(200, 401))
    assert (good.status, good.summary) == (
        "ok", "http://127.0.0.1:8080 answers, and refuses anonymous API calls")
    open_api = check_web(settings, answering(200, 200))
    assert open_api.status == "fail" and "without credentials" in open_api.summary
    assert check_web(settings, answering(503, 401)).status == "fail"


def test_a_missing_secret_or_no_answer_fails_in_one_line() -> None:
    no_secret = check_web(load_settings(WEB_USERS=users_text()))
    assert no_secret.status == "fail" and no_secret.summary.startswith("WEB_SECRET: ")
    settings = load_settings(WEB_USERS=users_text(), WEB_SECRET=SECRET,
                             WEB_ADDRESS="127.0.0.1:9")
    refused = check_web(settings)
    assert refused.status == "fail" and refused.summary.startswith(
        "http://127.0.0.1:9: no answer (")
