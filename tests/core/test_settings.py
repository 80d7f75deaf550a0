"""`cancelq.core.settings`: defaults, overrides, one-line errors naming the variable, and a key
that never leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cancelq.core.errors import ConfigError
from cancelq.core.settings import load_settings
from tests.conftest import API_KEY

STAGING = "https://api-staging.care360-next.carevalidate.com"
PRODUCTION = "https://api.care360-next.carevalidate.com"


def test_defaults_from_the_issue() -> None:
    s = load_settings()
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.care360_env == "staging"
    assert s.care360_base_url == STAGING
    assert s.max_attempts == 8
    assert s.retry_base_seconds == 2.0
    assert s.retry_max_seconds == 300.0
    assert s.timeout_seconds == 10.0
    assert s.visibility_timeout_seconds == 3600.0
    assert s.api_key is None


def test_environment_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("CANCEL_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("CANCEL_RETRY_BASE_SECONDS", "0.2")
    monkeypatch.setenv("CANCEL_RETRY_MAX_SECONDS", "1.5")
    monkeypatch.setenv("CARE360_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "60")
    s = load_settings()
    assert s.redis_url == "redis://cache:6380/2"
    assert s.max_attempts == 3
    assert s.retry_base_seconds == pytest.approx(0.2)
    assert s.retry_max_seconds == pytest.approx(1.5)
    assert s.timeout_seconds == pytest.approx(2.5)
    assert s.visibility_timeout_seconds == 60.0


def test_production_environment_selects_production_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARE360_ENV", "production")
    assert load_settings().care360_base_url == PRODUCTION


def test_base_url_override_wins_and_loses_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARE360_ENV", "production")
    monkeypatch.setenv("CARE360_BASE_URL", "http://127.0.0.1:8099/")
    assert load_settings().care360_base_url == "http://127.0.0.1:8099"


def test_overrides_by_field_name() -> None:
    s = load_settings(max_attempts=2, retry_base_seconds=0.01, retry_max_seconds=0.05)
    assert (s.max_attempts, s.retry_base_seconds, s.retry_max_seconds) == (2, 0.01, 0.05)


def _config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("CANCEL_MAX_ATTEMPTS", "many", id="max-attempts-not-a-number"),
        pytest.param("CANCEL_MAX_ATTEMPTS", "2.5", id="max-attempts-not-an-integer"),
        pytest.param("CANCEL_MAX_ATTEMPTS", "0", id="max-attempts-zero"),
        pytest.param("CANCEL_MAX_ATTEMPTS", "-1", id="max-attempts-negative"),
        pytest.param("CANCEL_RETRY_BASE_SECONDS", "soon", id="base-not-a-number"),
        pytest.param("CANCEL_RETRY_BASE_SECONDS", "-2", id="base-negative"),
        pytest.param("CANCEL_RETRY_MAX_SECONDS", "x", id="max-not-a-number"),
        pytest.param("CANCEL_RETRY_MAX_SECONDS", "-300", id="max-negative"),
        pytest.param("CARE360_TIMEOUT_SECONDS", "ten", id="timeout-not-a-number"),
        pytest.param("CARE360_TIMEOUT_SECONDS", "-10", id="timeout-negative"),
        pytest.param("CELERY_VISIBILITY_TIMEOUT", "1h", id="visibility-not-a-number"),
        pytest.param("CELERY_VISIBILITY_TIMEOUT", "-3600", id="visibility-negative"),
        pytest.param("CARE360_ENV", "prod", id="env-unknown"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    message = _config_error(monkeypatch, **{name: value})
    assert message.startswith(f"{name}:"), message


def test_retry_cap_longer_than_visibility_timeout_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _config_error(
        monkeypatch, CANCEL_RETRY_MAX_SECONDS="120", CELERY_VISIBILITY_TIMEOUT="60"
    )
    assert message.startswith("CANCEL_RETRY_MAX_SECONDS:"), message
    assert "CELERY_VISIBILITY_TIMEOUT" in message


def test_retry_cap_equal_to_visibility_timeout_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANCEL_RETRY_MAX_SECONDS", "60")
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "60")
    monkeypatch.setenv("CARE360_TIMEOUT_SECONDS", "5")
    assert load_settings().retry_max_seconds == 60.0


def test_retry_base_above_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(
        monkeypatch, CANCEL_RETRY_BASE_SECONDS="10", CANCEL_RETRY_MAX_SECONDS="5"
    )
    assert message.startswith("CANCEL_RETRY_BASE_SECONDS:"), message


def test_timeout_not_shorter_than_visibility_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(
        monkeypatch,
        CARE360_TIMEOUT_SECONDS="30",
        CELERY_VISIBILITY_TIMEOUT="30",
        CANCEL_RETRY_MAX_SECONDS="10",
    )
    assert message.startswith("CARE360_TIMEOUT_SECONDS:"), message


def test_api_key_from_env_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_API_KEY", f"  {API_KEY}\n")
    s = load_settings()
    assert s.require_api_key().get_secret_value() == API_KEY


def test_api_key_file_wins_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-the-file-0c1d\n", encoding="utf-8")
    monkeypatch.setenv("CV_API_KEY", API_KEY)
    monkeypatch.setenv("CV_API_KEY_FILE", str(key_file))
    assert load_settings().require_api_key().get_secret_value() == "from-the-file-0c1d"


@pytest.mark.parametrize("content", [None, "  \n"], ids=["missing-file", "empty-file"])
def test_unusable_key_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content, encoding="utf-8")
    monkeypatch.setenv("CV_API_KEY", API_KEY)
    monkeypatch.setenv("CV_API_KEY_FILE", str(key_file))
    with pytest.raises(ConfigError) as info:
        load_settings().require_api_key()
    message = str(info.value)
    assert message.startswith("CV_API_KEY_FILE:")
    assert "\n" not in message
    assert API_KEY not in message


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_require_api_key_without_key(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("CV_API_KEY", value)
    s = load_settings()
    assert s.api_key is None
    with pytest.raises(ConfigError) as info:
        s.require_api_key()
    assert str(info.value).startswith("CV_API_KEY:")
    assert "\n" not in str(info.value)


def test_key_never_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_API_KEY", API_KEY)
    s = load_settings()
    assert s.require_api_key().get_secret_value() == API_KEY  # loaded, and cached
    for text in (repr(s), str(s), repr(s.api_key), str(s.api_key), repr(s.model_dump())):
        assert API_KEY not in text


@pytest.mark.parametrize(
    "env",
    [
        {"CANCEL_MAX_ATTEMPTS": "nope"},
        {"CANCEL_RETRY_MAX_SECONDS": "7200"},  # cap > visibility: a model-level error
        {"CV_API_KEY_FILE": "/nonexistent/key"},
    ],
    ids=["field-error", "model-error", "key-file-error"],
)
def test_key_never_in_config_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.setenv("CV_API_KEY", API_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings().require_api_key()
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(info.value)


# -- issue 11: URLs are checked, and never shown with their password ------------------------


@pytest.mark.parametrize(
    "value",
    ["foo", "http://127.0.0.1:8080/", "redis://127.0.0.1:abc/0", "redis://h:6379/zero",
     "redis://:pw@[::1", "sentinel://h:26379;redis://h2:6379"],
)
def test_bad_redis_url_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _config_error(monkeypatch, REDIS_URL=value)
    assert message.startswith("REDIS_URL: "), message
    assert "pw@" not in message


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CARE360_BASE_URL": "foo"}, "http(s)://"),
        ({"CARE360_BASE_URL": "ftp://care360.example"}, "http(s)://"),
        ({"CARE360_BASE_URL": "https://"}, "no host"),
        ({"CARE360_BASE_URL": "http://care360.example"}, "CARE360_ALLOW_INSECURE"),
        ({"CARE360_BASE_URL": "http://10.1.2.3:8360"}, "unencrypted"),
    ],
)
def test_bad_care360_base_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    message = _config_error(monkeypatch, **env)
    assert message.startswith("CARE360_BASE_URL: ") and says in message, message


def test_plain_http_is_allowed_to_loopback_or_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARE360_BASE_URL", "http://localhost:8360")
    assert load_settings().care360_base_url == "http://localhost:8360"
    monkeypatch.setenv("CARE360_BASE_URL", "http://simulator:8360")
    monkeypatch.setenv("CARE360_ALLOW_INSECURE", "1")
    assert load_settings().care360_base_url == "http://simulator:8360"


def test_an_empty_base_url_means_the_environment_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARE360_BASE_URL", "")
    monkeypatch.setenv("CARE360_ENV", "production")
    assert load_settings().care360_base_url == PRODUCTION


def test_redis_password_never_in_repr_str_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-redis@cache:6379/0")
    s = load_settings()
    assert s.redis_url == "redis://:hunter2-redis@cache:6379/0"  # the value itself is intact
    for text in (repr(s), str(s)):
        assert "hunter2-redis" not in text and "redis://:***@cache:6379/0" in text
    message = _config_error(monkeypatch, REDIS_URL="redis://:hunter2-redis@cache:port/0")
    assert "hunter2-redis" not in message


@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        ({}, ""),
        ({"KEY_PREFIX": "acme"}, "acme"),
        ({"KEY_PREFIX": "acme", "QUEUE_PREFIX": "q1"}, "q1"),
        ({"QUEUE_PREFIX": ""}, ""),
    ],
)
def test_queue_prefix(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], prefix: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().queue_prefix == prefix


@pytest.mark.parametrize(
    ("name", "value"),
    [("BULK_MAX_FIELD_CHARS", "10"), ("BULK_MAX_LINE_BYTES", "lots"), ("QUEUE_PREFIX", "a b")],
)
def test_bulk_limits_and_queue_prefix_are_checked(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert _config_error(monkeypatch, **{name: value}).startswith(f"{name}: ")
