"""`celery inspect conf` (and Flower's worker Config tab) without a password in it.

Celery's built-in `conf` control command returns the worker's configuration as is: the
broker and result backend URLs, `redbeat_redis_url` and `redbeat_redis_options`, each with
the Redis password. `install_masked_conf` registers a `conf` command of the same name and
signature in its place, which first applies Celery's own censoring (`filter_hidden_settings`:
keys that look secret become `********`) and then masks the password of every URL left in
any string, nested values included (`cancelq.core.urls.mask_url`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.app.utils import filter_hidden_settings
from celery.utils.serialization import jsonify, strtobool
from celery.worker.control import inspect_command
from kombu.utils.encoding import safe_repr

from cancelq.core.urls import mask_url


def masked(value: Any) -> Any:
    """`value` with every string in it URL-masked (mappings and sequences walked)."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def masked_table(app: Celery, *, with_defaults: bool = False) -> dict[str, Any]:
    """The configuration as `celery inspect conf` reports it, with no secret in it."""
    table = filter_hidden_settings(app.conf.table(with_defaults=with_defaults))
    reported = jsonify(table, keyfilter=_wanted, unknown_type_filter=safe_repr)
    result: dict[str, Any] = masked(reported)
    return result


def _wanted(key: object) -> bool:
    return isinstance(key, str) and not key.startswith("__")


def _conf(state: Any, with_defaults: bool = False, **_: Any) -> dict[str, Any]:
    """List configuration (passwords masked)."""
    return masked_table(state.app, with_defaults=with_defaults)


def install_masked_conf(app: Celery) -> None:
    """Replace Celery's `conf` control command (a process-wide registry) with `_conf`."""
    del app  # the command reads the worker's own app from its state
    inspect_command(
        name="conf",
        alias="dump_conf",
        signature="[include_defaults=False]",
        args=[("with_defaults", strtobool)],
    )(_conf)
