"""The Celery app, created once. `celery -A worker ...` finds it here (Celery's convention).

Every process started from it (worker, beat, Flower) refuses to start with a bad setting, with
one line on stderr naming the variable and exit code 2, before it serves anything:

- the worker and beat check the settings and make one quick PING on `REDIS_URL`, so an
  address that is not Redis (an HTTP port, `rediss://` against a plain Redis, a database
  that does not exist) is refused in seconds instead of retried forever; a Redis that is
  merely down is left to Celery's own connection retries;
- the worker also needs the API key, and logs the Care360 address it calls (never the key);
- Flower needs authentication (`worker.flower_auth`, wired in `install_flower_guard`);
- every log line has URL passwords masked (`cancelq.core.urls.MaskURLs`), and
  the configuration Celery reports (`celery inspect conf`, Flower's Config tab) has the
  password of every URL masked (`worker.safe_conf`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click
from celery import Celery, signals

from cancelq.core.errors import ConfigError, RedisUnavailable
from cancelq.core.settings import Settings, load_settings
from cancelq.core.urls import host_of, mask_logging
from cancelq.store.connections import probe
from worker.flower_auth import install_flower_guard
from worker.safe_conf import install_masked_conf
from worker.scheduler import RetrySchedulerStep
from worker.siblings import SiblingsStep
from worker.telemetry import TelemetryStep

log = logging.getLogger("cancelq.worker")

app = Celery("cancelq", include=["worker.tasks"])
app.config_from_object("celeryconfig")
app.steps["worker"].add(RetrySchedulerStep)
app.steps["worker"].add(TelemetryStep)  # heartbeat for `cancelq health`, metrics
app.steps["worker"].add(SiblingsStep)  # WORKER_PROCESSES consumers from one command
install_flower_guard(app)
install_masked_conf(app)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per outcome is ours to log


def refuse(exc: BaseException, role: str) -> NoReturn:
    print(f"cancelq {role}: refusing to start: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def check_redis(settings: Settings, role: str) -> None:
    """Refuse an address that cannot be Redis; only warn when Redis is just not up yet."""
    try:
        probe(settings)
    except RedisUnavailable as exc:
        print(f"cancelq {role}: {exc}; retrying", file=sys.stderr, flush=True)


@signals.after_setup_logger.connect
def _mask_urls_in_logs(logger: logging.Logger, **_: Any) -> None:
    """Every line the worker or beat logs has URL passwords masked (kombu's included)."""
    mask_logging(logger)


@signals.worker_init.connect
def _refuse_bad_config(**_: Any) -> None:
    try:
        settings = load_settings()
        settings.require_api_key()
        check_redis(settings, "worker")
    except ConfigError as exc:
        refuse(exc, "worker")
    print(f"cancelq worker: calling Care360 at {host_of(settings.care360_base_url)}",
          file=sys.stderr, flush=True)


def _refuse_bad_beat_config(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """Beat builds its scheduler (which connects to Redis) before any beat signal, so the
    check runs as the callback of a hidden option: click calls it while parsing `beat`'s
    command line, before the banner and before any connection."""
    try:
        check_redis(load_settings(), "beat")
    except ConfigError as exc:
        refuse(exc, "beat")
    return value


app.user_options["beat"].add(click.Option(
    ["--cancelq-config-check"], is_flag=True, hidden=True, expose_value=False,
    callback=_refuse_bad_beat_config,
))
