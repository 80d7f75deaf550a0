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
