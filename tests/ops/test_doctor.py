"""`cancelq doctor`'s pieces on test doubles: masking, the Care360 probe, exit code 2.

The checks against a live and a dead Redis, a real worker and the simulator are in
tests/integration/test_doctor.py.
"""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from cancelq.core.settings import load_settings
from cancelq.core.urls import mask_url
from cancelq.ops.doctor import NIL_UUID, PROBE_ACTION, check_care360, effective_settings
from producers.cli import main
from producers.dev.local_redis import free_port
from tests.conftest import API_KEY


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://ops:p%40ss@redis.example:6380/1", "rediss://ops:***@redis.example:6380/1"),
        ("sentinel://:pw1@h1:26379;sentinel://:pw2@h2:26379/0",
         "sentinel://:***@h1:26379;sentinel://:***@h2:26379/0"),
        ("https://user:tok@api.example/x", "https://user:***@api.example/x"),
        ("redis://user@host:6379", "redis://user@host:6379"),
    ],
)
def test_passwords_in_urls_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_doctor_masks_a_password_with_an_at_sign_whole() -> None:
    """Issue 16: doctor's own regex stopped at the first `@` (`:***@ssw0rdTail@h`)."""
    url = f"redis://:Pa@ssw0rdTail@127.0.0.1:{free_port()}/0"
    for args in (["doctor"], ["doctor", "--json"]):
        result = CliRunner().invoke(main, args, env={
            "REDIS_URL": url, "CARE360_BASE_URL": "http://127.0.0.1:9", "COLUMNS": "200"})
        assert result.exit_code == 1, result.output  # Redis does not answer: a failed check
        assert "ssw0rd" not in result.output and "Pa@" not in result.output
        assert "redis://:***@127.0.0.1:" in result.output


def test_effective_settings_never_show_a_secret(tmp_path: object) -> None:
    settings = load_settings(redis_url="redis://:hunter2@redis:6379/0", cv_api_key=API_KEY,
                             flower_basic_auth="ops:flowerpass", key_prefix="p1")
    shown = effective_settings(settings)
    text = json.dumps(shown)
    for secret in (API_KEY, "hunter2", "flowerpass"):
        assert secret not in text
    assert shown["REDIS_URL"] == "redis://:***@redis:6379/0"
    assert shown["CV_API_KEY"] == "set (hidden)"
    assert shown["FLOWER_BASIC_AUTH"] == "set (hidden)"
    assert shown["KEY_PREFIX"] == "p1"
    assert shown["(API key in use)"] == "set, from CV_API_KEY (hidden)"


class Care360:
    """Answers the doctor's probes: 401 without the right key, `keyed` with it."""

    def __init__(self, keyed: int = 404, anonymous: int = 401) -> None:
        self.keyed, self.anonymous = keyed, anonymous
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("cv-api-key") == API_KEY:
            return httpx.Response(self.keyed, json={"status": self.keyed})
        if "cv-api-key" in request.headers:
            return httpx.Response(401, json={"status": 401})
        return httpx.Response(self.anonymous, json={"status": self.anonymous})


def probe(upstream: Care360, key: str | None = API_KEY) -> tuple[str, str]:
    settings = load_settings(cv_api_key=key, care360_base_url_override="https://c360.test")
    check = check_care360(settings, httpx.MockTransport(upstream))
    assert API_KEY not in json.dumps(check.to_json())
    return check.status, check.summary


def test_the_probe_cancels_nothing_and_reads_the_key_from_the_answer() -> None:
    upstream = Care360(keyed=404)
    assert probe(upstream) == ("ok", "https://c360.test reachable; key accepted (probe refused "
                                     "with HTTP 404, nothing cancelled)")
    anonymous, keyed = upstream.requests
    for request in upstream.requests:
        assert request.url.path == f"/api/v1/cases/{NIL_UUID}"
        assert json.loads(request.content) == {"action": PROBE_ACTION,
                                               "calendar": {"id": NIL_UUID}}
    assert "cv-api-key" not in anonymous.headers
    assert keyed.headers["cv-api-key"] == API_KEY


@pytest.mark.parametrize(
    ("upstream", "key", "status", "says"),
    [
        (Care360(keyed=400), API_KEY, "ok", "key accepted"),
        (Care360(), "sk-rotated-wrong", "fail", "REJECTED (401)"),
        (Care360(), None, "warn", "no API key set"),
        (Care360(anonymous=400), API_KEY, "warn", "cannot tell whether the key is accepted"),
        (Care360(anonymous=503), API_KEY, "fail", "answered HTTP 503 without a key"),
        (Care360(keyed=500), API_KEY, "fail", "keyed probe with HTTP 500"),
        (Care360(keyed=200), API_KEY, "warn", "keyed probe with HTTP 200"),
    ],
)
def test_each_answer_class(upstream: Care360, key: str | None, status: str, says: str) -> None:
    got_status, summary = probe(upstream, key)
    assert got_status == status and says in summary


def test_an_unreachable_api_fails_without_leaking_the_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused, headers were {dict(request.headers)}",
                                 request=request)

    settings = load_settings(cv_api_key=API_KEY, care360_base_url_override="https://c360.test")
    check = check_care360(settings, httpx.MockTransport(refuse))
    assert check.status == "fail"
    assert check.summary == "cannot reach https://c360.test (ConnectError)"


def test_a_configuration_error_exits_2_with_one_line() -> None:
    result = CliRunner().invoke(main, ["doctor"], env={"CANCEL_MAX_ATTEMPTS": "0"})
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "CANCEL_MAX_ATTEMPTS" in result.output


def test_an_unreadable_key_file_is_a_configuration_error(tmp_path: object) -> None:
    result = CliRunner().invoke(main, ["doctor"], env={"CV_API_KEY_FILE": "/nonexistent/key"})
    assert result.exit_code == 2 and "CV_API_KEY_FILE" in result.output


def test_a_malformed_redis_url_is_a_configuration_error_that_hides_the_password() -> None:
    result = CliRunner().invoke(main, ["doctor"], env={"REDIS_URL": "redis://:pw@host:port:1/0"})
    assert result.exit_code == 2
    assert result.output.startswith("cancelq: configuration error: REDIS_URL: ")
    assert result.output.count("\n") == 1
    assert "pw" not in result.output
