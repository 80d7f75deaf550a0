"""The Celery app, created once. `celery -A worker ...` finds it here (Celery's convention).

The worker refuses to start without an API key or with a bad setting, with one line on
stderr naming the variable, before it connects to anything.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery, signals

from cancelq.core.errors import ConfigError
from cancelq.core.settings import load_settings
from worker.scheduler import RetrySchedulerStep
from worker.telemetry import TelemetryStep

app = Celery("cancelq", include=["worker.tasks"])
app.config_from_object("celeryconfig")
app.steps["worker"].add(RetrySchedulerStep)
app.steps["worker"].add(TelemetryStep)  # heartbeat for `cancelq health`, metrics
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per outcome is ours to log


@signals.worker_init.connect
def _refuse_bad_config(**_: Any) -> None:
    try:
        load_settings().require_api_key()
    except ConfigError as exc:
        print(f"cancelq worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
