"""One typed settings object, read from the environment.

Every process (worker, producers, CLI, demo) reads its configuration here and nowhere else,
so a bad value is refused in one place, with one line that names the variable. The API key
is a `SecretStr`: its repr is masked, so it cannot leak through a log line or a traceback.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cancelq.core.errors import ConfigError
from cancelq.core.urls import (
    check_archive_url,
    check_care360_url,
    check_redis_url,
    mask_url,
    with_password,
)

BASE_URLS: dict[str, str] = {
    "production": "https://api.care360-next.carevalidate.com",
    "staging": "https://api-staging.care360-next.carevalidate.com",
}

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: What a server of ours listens on when no address is given: this machine only.
DEFAULT_LISTEN_ADDRESS = "127.0.0.1"
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_BASE_SECONDS = 2.0
DEFAULT_RETRY_MAX_SECONDS = 300.0
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 3600.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_BREAKER_FAILURES = 10
DEFAULT_BREAKER_WINDOW_SECONDS = 30.0
DEFAULT_BREAKER_PROBE_SECONDS = 5.0
DEFAULT_KEY_PREFIX = "c360"
#: Bulk input limits: a CSV field or a line longer than these is one bad row, not a crash.
#: A valid row is two UUIDs and a reason of at most 1,000 characters: 64 KiB is generous.
DEFAULT_BULK_MAX_FIELD_CHARS = 4_096
DEFAULT_BULK_MAX_LINE_BYTES = 65_536
#: Jobs per bulk message: Celery's cost per message (~1.4 ms of CPU) is paid once a batch.
#: 20, not more: a batch holds its worker thread until its last job is recorded, and a
#: real-time message waits for a free thread; at 20 a thread frees every ~25 ms during a
#: drain (measured, 20,000 rows, 50 ms API: real-time p99 216 ms at 20, 267 ms at 50,
#: 348 ms at 100, the same drain time; docs/benchmarks.md).
DEFAULT_BULK_BATCH_SIZE = 20
#: The web console's address: this machine only, port 8080.
DEFAULT_WEB_ADDRESS = f"{DEFAULT_LISTEN_ADDRESS}:8080"
#: A session secret shorter than this is refused: it signs every operator's session.
MIN_WEB_SECRET_CHARS = 32

_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")


class Settings(BaseSettings):
    """The whole configuration; field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    redis_url: str = Field(DEFAULT_REDIS_URL, alias="REDIS_URL")
    redis_sentinel_master: str | None = Field(None, alias="REDIS_SENTINEL_MASTER")
    care360_env: Literal["staging", "production"] = Field("staging", alias="CARE360_ENV")
    care360_base_url_override: str | None = Field(None, alias="CARE360_BASE_URL")
    care360_allow_insecure: bool = Field(False, alias="CARE360_ALLOW_INSECURE")
    cv_api_key: SecretStr | None = Field(None, alias="CV_API_KEY")
    cv_api_key_file: Path | None = Field(None, alias="CV_API_KEY_FILE")
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1, alias="CANCEL_MAX_ATTEMPTS")
    retry_base_seconds: float = Field(
        DEFAULT_RETRY_BASE_SECONDS, gt=0, alias="CANCEL_RETRY_BASE_SECONDS"
    )
    retry_max_seconds: float = Field(
        DEFAULT_RETRY_MAX_SECONDS, gt=0, alias="CANCEL_RETRY_MAX_SECONDS"
    )
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, gt=0, alias="CARE360_TIMEOUT_SECONDS")
    visibility_timeout_seconds: float = Field(
        DEFAULT_VISIBILITY_TIMEOUT_SECONDS, gt=0, alias="CELERY_VISIBILITY_TIMEOUT"
    )
    # 0 keeps settled and dead jobs forever
    audit_retention_days: float = Field(DEFAULT_RETENTION_DAYS, ge=0, alias="AUDIT_RETENTION_DAYS")
    lease_seconds: float = Field(DEFAULT_LEASE_SECONDS, gt=0, alias="CANCEL_LEASE_SECONDS")
    # 0 turns the circuit breaker off
    breaker_failures: int = Field(DEFAULT_BREAKER_FAILURES, ge=0, alias="CARE360_BREAKER_FAILURES")
    breaker_window_seconds: float = Field(
        DEFAULT_BREAKER_WINDOW_SECONDS, gt=0, alias="CARE360_BREAKER_WINDOW_SECONDS"
    )
    breaker_probe_seconds: float = Field(
        DEFAULT_BREAKER_PROBE_SECONDS, gt=0, alias="CARE360_BREAKER_PROBE_SECONDS"
    )
    worker_concurrency: int = Field(32, ge=1, le=512, alias="WORKER_CONCURRENCY")
    #: consumer processes per `celery -A worker worker` (worker/siblings.py); 0: the CPU count.
    #: 1 by default: on the 2-core bench machine, shared with Redis and the API, a second
    #: process measured no faster and cost ~115 MB (docs/benchmarks.md)
    worker_processes: int = Field(1, ge=0, le=64, alias="WORKER_PROCESSES")
    #: jobs per bulk message (at most contract.MAX_BATCH_JOBS): Celery's cost per message
    #: (~1.4 ms of CPU) is paid once a batch
    bulk_batch_size: int = Field(DEFAULT_BULK_BATCH_SIZE, ge=1, le=1000, alias="BULK_BATCH_SIZE")
    #: Care360 calls one worker process has in flight at most (batch and real-time together).
    #: 64, the script's concurrency: more calls in flight queue at the API, and a real-time
    #: call waits behind them there, where urgency cannot reach (measured at 50 ms: 64 ->
    #: real-time p99 207 ms during a bulk drain; 128 -> 367 ms; 256 -> 548 ms but bulk
    #: ~20% faster; docs/benchmarks.md). Raise it for a slower API with room to spare.
    max_in_flight: int = Field(64, ge=1, le=4096, alias="CARE360_MAX_IN_FLIGHT")
    scheduler_interval_seconds: float = Field(0.5, gt=0, alias="RETRY_SCHEDULER_INTERVAL_SECONDS")
    key_prefix: str = Field(
        DEFAULT_KEY_PREFIX, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", alias="KEY_PREFIX"
    )
    queue_prefix_override: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]*$", alias="QUEUE_PREFIX"
    )
    bulk_max_field_chars: int = Field(
        DEFAULT_BULK_MAX_FIELD_CHARS, ge=64, le=1 << 20, alias="BULK_MAX_FIELD_CHARS"
    )
    bulk_max_line_bytes: int = Field(
        DEFAULT_BULK_MAX_LINE_BYTES, ge=256, le=1 << 24, alias="BULK_MAX_LINE_BYTES"
    )
    auth_backoff_seconds: float = Field(60.0, ge=0, alias="CARE360_AUTH_BACKOFF_SECONDS")
    rate_limit_per_second: float = Field(20.0, ge=0, alias="CARE360_RATE_LIMIT")
    flower_basic_auth: SecretStr | None = Field(None, alias="FLOWER_BASIC_AUTH")
    cleanup_schedule: str | None = Field(None, alias="CLEANUP_SCHEDULE")
    cleanup_inbox: Path | None = Field(None, alias="CLEANUP_INBOX")
    #: where settled and dead jobs are archived for good (cancelq.archive); unset: no archive,
    #: and retention deletes jobs from Redis as before. postgresql+psycopg://... or sqlite:///
    archive_url: str | None = Field(None, alias="ARCHIVE_URL")
    #: a file holding the archive database's password (a mounted secret), put into
    #: ARCHIVE_URL's user part when the URL carries none
    archive_password_file: Path | None = Field(None, alias="ARCHIVE_PASSWORD_FILE")
    #: the worker migrates the archive's schema when it starts (one process at a time);
    #: off by default: a DBA may want to run `cancelq archive migrate` as another role
    archive_migrate: bool = Field(False, alias="ARCHIVE_MIGRATE")
    # Off by default: a worker serves its own Prometheus metrics (docs/metrics.md) when set.
    worker_metrics_port: int | None = Field(None, ge=1, le=65535, alias="WORKER_METRICS_PORT")
    #: Where `cancelq metrics` and a worker's metrics listen: loopback unless said otherwise
    #: (neither has authentication; docs/security.md, "What listens where").
    metrics_address: str = Field(
        DEFAULT_LISTEN_ADDRESS, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$",
        alias="METRICS_ADDRESS",
    )

    #: The web console (`cancelq web`, docs/web.md). Its users: whitespace-separated
    #: `name:role:hash` entries (`cancelq web hash-password` makes the hash); the file, a
    #: mounted secret, wins. No users: the console refuses to start.
    web_users: SecretStr | None = Field(None, alias="WEB_USERS")
    web_users_file: Path | None = Field(None, alias="WEB_USERS_FILE")
    #: signs the console's session cookies; required, at least 32 characters (the file wins)
    web_secret: SecretStr | None = Field(None, alias="WEB_SECRET")
    web_secret_file: Path | None = Field(None, alias="WEB_SECRET_FILE")
    #: where the console listens, host:port: loopback unless told otherwise
    web_address: str = Field(DEFAULT_WEB_ADDRESS, alias="WEB_ADDRESS")
    #: where `cancelq doctor` reaches the console (behind a proxy, say); unset: WEB_ADDRESS
    web_url: str | None = Field(None, alias="WEB_URL")

    def __repr_args__(self) -> Any:
        """pydantic's repr, with the password of every URL masked (SecretStr does the key)."""
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if isinstance(value, str) else value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        check_redis_url(value)
        return value.strip()

    @field_validator("archive_url")
    @classmethod
    def _archive_url(cls, value: str | None) -> str | None:
        """Set but empty means no archive; anything else must be a database URL we speak."""
        if value is None or not value.strip():
            return None
        check_archive_url(value)
        return value.strip()

    @field_validator("web_address")
    @classmethod
    def _web_address(cls, value: str) -> str:
        host, port = split_address(value)
        return f"{host}:{port}"

    @field_validator("care360_base_url_override")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """Set but empty (compose's `CARE360_BASE_URL=`) means the CARE360_ENV URL."""
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.care360_base_url_override is not None:
            try:
                check_care360_url(
                    self.care360_base_url_override, allow_insecure=self.care360_allow_insecure
                )
            except ValueError as exc:
                raise ValueError(f"CARE360_BASE_URL: {exc}") from None
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError(
                "CANCEL_RETRY_BASE_SECONDS: must not exceed CANCEL_RETRY_MAX_SECONDS"
            )
        if self.retry_max_seconds > self.visibility_timeout_seconds:
            raise ValueError(
                "CANCEL_RETRY_MAX_SECONDS: must not exceed CELERY_VISIBILITY_TIMEOUT"
            )
        if self.timeout_seconds >= self.visibility_timeout_seconds:
            raise ValueError(
                "CARE360_TIMEOUT_SECONDS: must be shorter than CELERY_VISIBILITY_TIMEOUT"
            )
        if self.lease_seconds <= self.timeout_seconds:
            raise ValueError(
                "CANCEL_LEASE_SECONDS: must be longer than CARE360_TIMEOUT_SECONDS"
            )
        return self

    @property
    def processes(self) -> int:
        """Consumer processes per worker command: WORKER_PROCESSES, or one per CPU for 0."""
        return self.worker_processes or os.cpu_count() or 1

    @property
    def retention_seconds(self) -> float:
        """How long a settled or dead job is kept; 0 forever (`AUDIT_RETENTION_DAYS`)."""
        return self.audit_retention_days * 86400

    @property
    def care360_base_url(self) -> str:
        return (self.care360_base_url_override or BASE_URLS[self.care360_env]).rstrip("/")

    @property
    def queue_prefix(self) -> str:
        """What broker queue names start with: `QUEUE_PREFIX` if set, else `KEY_PREFIX`,
        except that the default `KEY_PREFIX` keeps the historical names (no prefix), so an
        existing deployment's queues do not change under it."""
        if self.queue_prefix_override is not None:
            return self.queue_prefix_override
        return "" if self.key_prefix == DEFAULT_KEY_PREFIX else self.key_prefix

    @cached_property
    def api_key(self) -> SecretStr | None:
        """The key from `CV_API_KEY_FILE` if set (a mounted secret wins), else `CV_API_KEY`."""
        if self.cv_api_key_file is not None:
            try:
                text = self.cv_api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"CV_API_KEY_FILE: cannot read {self.cv_api_key_file}: {exc.strerror}"
                ) from None
            if not text:
                raise ConfigError(f"CV_API_KEY_FILE: {self.cv_api_key_file} is empty")
            return SecretStr(text)
        if self.cv_api_key is not None and self.cv_api_key.get_secret_value().strip():
            return SecretStr(self.cv_api_key.get_secret_value().strip())
        return None

    def archive_dsn(self) -> str | None:
        """The archive URL to connect with: ARCHIVE_URL, with the password from
        ARCHIVE_PASSWORD_FILE when it has none (None: no archive). Never printed: show
        `mask_url` of it."""
        if self.archive_url is None or self.archive_password_file is None:
            return self.archive_url
        try:
            password = self.archive_password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"ARCHIVE_PASSWORD_FILE: cannot read "
                              f"{self.archive_password_file}: {exc.strerror}") from None
        return with_password(self.archive_url, password)

    @property
    def web_host_port(self) -> tuple[str, int]:
        """WEB_ADDRESS as (host, port)."""
        return split_address(self.web_address)

    def web_users_text(self) -> str:
        """The raw WEB_USERS entries: WEB_USERS_FILE if set, else WEB_USERS ('' for none)."""
        if self.web_users_file is not None:
            return _read_secret_file("WEB_USERS_FILE", self.web_users_file)
        return self.web_users.get_secret_value().strip() if self.web_users else ""

    def require_web_secret(self) -> SecretStr:
        """The key that signs the console's sessions: never made up, never short."""
        if self.web_secret_file is not None:
            text = _read_secret_file("WEB_SECRET_FILE", self.web_secret_file)
            name = "WEB_SECRET_FILE"
        else:
            text = self.web_secret.get_secret_value().strip() if self.web_secret else ""
            name = "WEB_SECRET"
        if len(text) < MIN_WEB_SECRET_CHARS:
            raise ConfigError(
                f"{name}: the web console needs a session secret of at least "
                f"{MIN_WEB_SECRET_CHARS} characters (make one: python3 -c 'import secrets; "
                f"print(secrets.token_urlsafe(32))')")
        return SecretStr(text)

    def require_api_key(self) -> SecretStr:
        """The worker cannot do its job without a key; producers never need one."""
        key = self.api_key
        if key is None:
            raise ConfigError("CV_API_KEY: required by the worker (or set CV_API_KEY_FILE)")
        return key


def split_address(value: str) -> tuple[str, int]:
    """`host:port` (`[::1]:8080` for IPv6) as (host, port); ValueError names what is wrong."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not _HOST.match(host):
        raise ValueError(f"not host:port: {value[:60]!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be 1-65535: {value[:60]!r}")
    return host, int(port)


def _read_secret_file(name: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{name}: {path} is empty")
    return text


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a bad value becomes one `ConfigError` line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    fields = Settings.model_fields
    loc = error["loc"][0] if error["loc"] else ""
    name = fields[str(loc)].alias if str(loc) in fields else str(loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if name and not message.startswith(str(name) or "\0"):
        message = f"{name}: {message}"
    value = error.get("input")
    if name and isinstance(value, str) and name not in _NEVER_ECHOED and "(got " not in message:
        message = f"{message} (got {mask_url(value)[:120]!r})"
    return mask_url(" ".join(message.split()))


#: Values never repeated in an error line: secrets, and values already quoted masked.
_NEVER_ECHOED = frozenset({"CV_API_KEY", "FLOWER_BASIC_AUTH", "REDIS_URL", "ARCHIVE_URL",
                           "WEB_USERS", "WEB_SECRET"})
