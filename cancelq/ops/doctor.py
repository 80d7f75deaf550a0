"""`cancelq doctor`: the configuration and everything it points at, checked in one go.

Each check returns one `Check` (ok, warn, fail or skip, a one-line summary, detail lines,
and data for `--json`). The effective settings are shown with every secret masked: the
API key and Flower's credentials never appear, passwords in URLs become `***`.

Care360 is probed with two requests that cannot cancel anything: a POST to the nil case
`00000000-0000-0000-0000-000000000000` with an action that does not exist
(`CANCELQ_DOCTOR_PROBE`) and the nil event id. The first is sent without a key and must be
answered 401 (the API checks keys first); the second with the key: 401 means the key is
rejected, a 400 or 404 means it was accepted and the request refused on its merits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import redis
from pydantic import SecretStr

from cancelq.care360.client import PATH
from cancelq.core.errors import ArchiveUnavailable, ConfigError
from cancelq.core.settings import Settings
from cancelq.core.urls import mask_url
from cancelq.ops.health import Heartbeat, queue_heads, read_heartbeats
from cancelq.ops.stats import snapshot
from cancelq.store import server
from cancelq.store.audit import AuditStore

Status = Literal["ok", "warn", "fail", "skip"]

NIL_UUID = "00000000-0000-0000-0000-000000000000"
PROBE_ACTION = "CANCELQ_DOCTOR_PROBE"
PROBE_TIMEOUT_SECONDS = 5.0
#: A queue head waiting longer than this is worth a warning.
QUEUE_AGE_WARN_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "details": list(self.details), **({"data": self.data} if self.data else {})}


# -- settings -----------------------------------------------------------------------------


def effective_settings(settings: Settings) -> dict[str, str | None]:
    """Every setting by its variable name, secrets masked, plus the derived ones."""
    shown: dict[str, str | None] = {}
    for name, info in type(settings).model_fields.items():
        shown[info.alias or name.upper()] = _shown(getattr(settings, name))
    key = settings.api_key  # reads CV_API_KEY_FILE: a ConfigError if it cannot
    source = "CV_API_KEY_FILE" if settings.cv_api_key_file is not None else "CV_API_KEY"
    shown["(API key in use)"] = f"set, from {source} (hidden)" if key else "not set"
    shown["(Care360 base URL in use)"] = mask_url(settings.care360_base_url)
    return shown


def _shown(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return "set (hidden)" if value.get_secret_value() else "empty"
    if isinstance(value, Path):
        return str(value)
    return mask_url(value) if isinstance(value, str) else str(value)


# -- Redis, queues, workers ---------------------------------------------------------------


def check_redis(store: AuditStore, url: str) -> Check:
    try:
        info = server.info(store)
    except redis.RedisError as exc:
        return Check("redis", "fail", f"cannot reach {mask_url(url)} ({type(exc).__name__})")
    aof = str(info.get("aof_enabled", "0")) == "1"
    rdb = server.save_schedule(store)
    policy = str(info.get("maxmemory_policy", "?"))
    data = {"version": info.get("redis_version"), "role": info.get("role"), "aof": aof,
            "rdb_save": rdb, "maxmemory_policy": policy,
            "used_memory": info.get("used_memory_human"),
            "maxmemory": info.get("maxmemory_human")}
    persistence = "AOF" if aof else ("RDB only" if rdb else "no persistence")
    summary = (f"{data['version']} ({data['role']}), {persistence}, maxmemory-policy {policy}, "
               f"{data['used_memory']} used")
    if policy != "noeviction":
        return Check("redis", "fail", summary, ("an evicting Redis drops broker messages: "
                                                "set maxmemory-policy noeviction",), data)
    if not aof:
        return Check("redis", "warn", summary, ("AOF is off: a restart loses what the last "
                                                "snapshot (if any) did not hold",), data)
    return Check("redis", "ok", summary, (), data)


def check_queues(store: AuditStore) -> Check:
    snap = snapshot(store)
    heads = queue_heads(store, snap.taken_at)
    parts: list[str] = []
    details: list[str] = []
    data: dict[str, Any] = {}
    status: Status = "ok"
    for q in snap.queues:
        age = heads[q.name].age_seconds
        parts.append(f"{q.name} {q.ready}" + (f" (oldest {_ago(age)})" if age else ""))
        data[q.name] = {"ready": q.ready, "oldest_age_seconds": age}
        if age is not None and age > QUEUE_AGE_WARN_SECONDS:
            status = "warn"
            details.append(f"{q.name}: the next job has waited {_ago(age)}")
    breaker = snap.breaker
    data.update(delayed=snap.delayed, unacked=snap.unacked, dead_letters=snap.dead_letters,
                auth_blocked_seconds=snap.auth_blocked_seconds, breaker=breaker.state)
    if snap.auth_blocked_seconds is not None:
        status = "warn"
        details.append("calls paused after a 401: fix the key, then "
                       "`cancelq dlq replay --all --outcome unauthorized`")
    if breaker.state not in ("closed",):
        status = "warn"
        details.append(f"circuit breaker {breaker.state}")
    summary = (", ".join(parts) + f"; {snap.delayed} delayed, {snap.unacked} unacked, "
               f"{snap.dead_letters} dead")
    return Check("queues", status, summary, tuple(details), data)


def check_workers(store: AuditStore) -> Check:
    now = store.now()
    beats = read_heartbeats(store)
    online = [b for b in beats if b.online(now)]
    details = tuple(
        f"{b.node}: {b.concurrency} threads, {','.join(b.queues)}, heartbeat "
        f"{_ago(now - b.at)} ago, received "
        + (f"{_ago(now - b.consumed_at)} ago" if b.consumed_at is not None else "nothing yet")
        + ("" if b.online(now) else " (offline)")
        for b in beats
    )
    data = {"workers": [{"node": b.node, "host": b.host, "pid": b.pid,
                         "concurrency": b.concurrency, "queues": list(b.queues),
                         "heartbeat_age_seconds": round(now - b.at, 3),
                         "idle_seconds": round(b.idle_seconds(now), 3),
                         "online": b.online(now)} for b in beats]}
    if not online:
        why = "no worker online" + (f" ({len(beats)} offline)" if beats else "")
        return Check("workers", "fail", f"{why}: nothing consumes the queues", details, data)
    offline = len(beats) - len(online)
    summary = f"{len(online)} online" + (f", {offline} offline" if offline else "")
    return Check("workers", "ok", summary, details, data)


# -- the archive --------------------------------------------------------------------------

#: A settled job waiting longer than this for the archive is worth a warning.
ARCHIVE_LAG_WARN_SECONDS = 300.0


def check_archive(settings: Settings, store: AuditStore | None) -> Check:
    """Reachable, migrated, and keeping up (the backlog needs Redis: None skips it)."""
    if not settings.archive_url:
        return Check("archive", "skip", "ARCHIVE_URL not set: settled jobs live only in "
                     "Redis, until AUDIT_RETENTION_DAYS")
    from cancelq.archive import migrate  # SQLAlchemy and Alembic: only with an archive
    from cancelq.archive.archive import Archive

    archive = Archive(settings.archive_dsn() or "")
    try:
        archive.check()
    except ArchiveUnavailable as exc:
        return Check("archive", "fail", str(exc), data={"url": archive.where})
    finally:
        archive.close()
    data: dict[str, Any] = {"url": archive.where, "schema": migrate.head()}
    if store is None:
        return Check("archive", "ok", f"{archive.where}: schema {migrate.head()}; backlog "
                     "unknown (needs Redis)", data=data)
    pending, oldest = store.archive_backlog()
    # scores are the settling workers' clocks (time.time()): compared with this host's
    lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
    data.update(pending=pending, oldest_pending_age_seconds=round(lag, 3))
    summary = (f"{archive.where}: schema {migrate.head()}, {pending:,} job(s) waiting"
               + (f", oldest settled {_ago(lag)} ago" if pending else ""))
    if lag > ARCHIVE_LAG_WARN_SECONDS:
        return Check("archive", "warn", summary, (
            "the archiver is behind: is a worker (or `cancelq archive run --follow`) "
            "running with ARCHIVE_URL? Redis keeps these jobs until they are archived",), data)
    return Check("archive", "ok", summary, data=data)


# -- Care360 ------------------------------------------------------------------------------


def check_care360(settings: Settings, transport: httpx.BaseTransport | None = None) -> Check:
    base = settings.care360_base_url
    key = settings.api_key
    shown = mask_url(base)
    try:
        with httpx.Client(base_url=base, transport=transport, follow_redirects=False,
                          timeout=min(PROBE_TIMEOUT_SECONDS, settings.timeout_seconds)) as http:
            anonymous = _probe(http, None)
            keyed = _probe(http, key) if key is not None else None
    except ProbeFailed as exc:
        return Check("care360", "fail", f"cannot reach {shown} ({exc})")
    data = {"base_url": shown, "without_key": anonymous,
            **({"with_key": keyed} if keyed is not None else {})}
    if anonymous != 401:
        status: Status = "fail" if anonymous >= 500 or anonymous == 429 else "warn"
        return Check("care360", status, f"{shown} answered HTTP {anonymous} without a key "
                     "(expected 401): cannot tell whether the key is accepted", (), data)
    if keyed is None:
        return Check("care360", "warn", f"{shown} reachable; no API key set to test "
                     "(producers need none, workers do)", (), data)
    if keyed == 401:
        return Check("care360", "fail", f"{shown} reachable; the API key is REJECTED (401)",
                     (), data)
    if keyed in (400, 404):
        return Check("care360", "ok", f"{shown} reachable; key accepted (probe refused "
                     f"with HTTP {keyed}, nothing cancelled)", (), data)
    status = "warn" if keyed < 300 else "fail"
    return Check("care360", status, f"{shown} answered the keyed probe with HTTP {keyed}",
                 (), data)


def key_verdict(check: Check) -> str:
    """`KEY_VERDICTS` of a care360 check: what a worker publishes after its start probe."""
    keyed = check.data.get("with_key")
    if keyed == 401:
        return "rejected"
    return "accepted" if keyed in (400, 404) else "unknown"


def key_log_line(check: Check) -> str:
    """The worker's one line at start about its key (never the key itself)."""
    verdict = key_verdict(check)
    if verdict == "rejected":
        return (f"Care360 REJECTED the API key (401) at {check.data.get('base_url')}: every "
                "job will dead-letter as unauthorized; fix CV_API_KEY_FILE, restart, then "
                "`cancelq dlq replay --all --outcome unauthorized`")
    if verdict == "accepted":
        return f"Care360 accepted the API key at {check.data.get('base_url')}"
    return f"could not check the API key: {check.summary}"


class ProbeFailed(Exception):
    """The exchange failed; carries only httpx's exception name (never the request)."""


def _probe(http: httpx.Client, key: SecretStr | None) -> int:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["cv-api-key"] = key.get_secret_value()
    body = {"action": PROBE_ACTION, "calendar": {"id": NIL_UUID}}
    failure: ProbeFailed | None = None
    try:
        return http.post(PATH.format(case_id=NIL_UUID), json=body, headers=headers).status_code
    except httpx.HTTPError as exc:  # raised below, so no request (headers) in __context__
        failure = ProbeFailed(type(exc).__name__)
    raise failure


# -- whose settings -----------------------------------------------------------------------

#: Settings a shell need not share with the workers: secrets, their files (paths differ by
#: host), and each process's own listener.
PER_PROCESS = frozenset({"CV_API_KEY", "CV_API_KEY_FILE", "(API key in use)",
                         "ARCHIVE_PASSWORD_FILE", "FLOWER_BASIC_AUTH", "WORKER_METRICS_PORT",
                         "METRICS_ADDRESS"})


@dataclass(frozen=True, slots=True)
class Whose:
    """The settings doctor judges: the online workers' when they publish theirs, else the
    shell's; and the workers' key verdict from their start probe (None: unknown)."""

    who: str
    settings: dict[str, str | None]
    key_verdict: str | None = None
    workers: bool = False


def whose_settings(shell: dict[str, str | None], beats: Sequence[Heartbeat],
                   now: float) -> Whose:
    online = [b for b in beats if b.online(now) and b.settings is not None]
    if not online:
        return Whose("this shell's (no online worker publishes its own)", shell)
    nodes = ", ".join(b.node for b in online[:3]) + (", ..." if len(online) > 3 else "")
    verdicts = {b.key_verdict for b in online if b.key_verdict is not None}
    verdict = "rejected" if "rejected" in verdicts else next(iter(sorted(verdicts)), None)
    return Whose(f"the workers' ({nodes})", dict(online[0].settings or {}), verdict, True)


def differing(a: dict[str, str | None], b: dict[str, str | None]) -> list[str]:
    """Names whose values differ, secrets and per-process settings aside."""
    return [name for name in sorted(set(a) | set(b))
            if name not in PER_PROCESS and a.get(name) != b.get(name)]


def check_settings(shell: dict[str, str | None], whose: Whose,
                   beats: Sequence[Heartbeat], now: float) -> Check:
    """Whose settings the checks judged, and in one line whether the shell's differ."""
    data: dict[str, Any] = {"judged": "workers" if whose.workers else "shell"}
    if not whose.workers:
        return Check("settings", "ok", f"judged {whose.who}", data=data)
    problems: list[str] = []
    shell_differs = differing(shell, whose.settings)
    if shell_differs:
        data["shell_differs"] = shell_differs
        problems.append(f"this shell differs from them in {', '.join(shell_differs)}")
    online = [b for b in beats if b.online(now) and b.settings is not None]
    split = sorted({n for b in online for n in differing(whose.settings, b.settings or {})})
    if split:
        data["workers_differ"] = split
        problems.append(f"the workers differ among themselves in {', '.join(split)}")
    summary = f"judged {whose.who}" + ("; " + "; ".join(problems) if problems else "")
    return Check("settings", "warn" if split else "ok", summary, data=data)


def _care360_of(settings: Settings, whose: Whose,
                transport: httpx.BaseTransport | None) -> Check:
    """Care360 at the base URL the judged processes use, and their key's verdict."""
    base = whose.settings.get("(Care360 base URL in use)")
    effective = settings
    if whose.workers and base and base != settings.care360_base_url:
        effective = settings.model_copy(update={"care360_base_url_override": base})
    check = check_care360(effective, transport)
    if whose.key_verdict is None or "cannot reach" in check.summary:
        return check
    shown = mask_url(effective.care360_base_url)
    data = {**check.data, "workers_key": whose.key_verdict}
    if whose.key_verdict == "rejected":
        return Check("care360", "fail", f"{shown} reachable; the workers' API key was "
                     "REJECTED (401) at their start", (), data)
    if "with_key" not in check.data and whose.key_verdict == "accepted":
        return Check("care360", "ok", f"{shown} reachable; the workers' key was accepted "
                     "at their start", (), data)
    return Check(check.name, check.status, check.summary, check.details, data)


# -- all of it ----------------------------------------------------------------------------


WEB_PROBE_TIMEOUT_SECONDS = 5.0


def web_url(settings: Settings) -> str | None:
    """Where the web console should answer: WEB_URL, else WEB_ADDRESS once the console is
    configured (users, or an address given); None when nothing says it runs."""
    if settings.web_url:
        return settings.web_url.rstrip("/")
    configured = (settings.web_users is not None or settings.web_users_file is not None
                  or "web_address" in settings.model_fields_set)
    if not configured:
        return None
    host, port = settings.web_host_port
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_web(settings: Settings, transport: httpx.BaseTransport | None = None) -> Check:
    """The console answers /healthz and its API refuses a request without credentials (it
    must never serve the audit to anyone who asks); where its users are configured (the
    host that runs it), its settings must also let it start."""
    url = web_url(settings)
    if url is None:
        return Check("web", "skip", "not configured (set WEB_USERS, or WEB_URL)")
    if settings.web_users is not None or settings.web_users_file is not None:
        try:  # the console's own settings are here: they must let it start
            settings.require_web_secret()
            settings.web_users_text()
        except ConfigError as exc:
            return Check("web", "fail", str(exc))
    try:
        with httpx.Client(base_url=url, transport=transport, follow_redirects=False,
                          timeout=WEB_PROBE_TIMEOUT_SECONDS) as http:
            health = http.get("/healthz").status_code
            anonymous = http.get("/api/v1/jobs", params={"limit": 1}).status_code
    except httpx.HTTPError as exc:
        return Check("web", "fail", f"{mask_url(url)}: no answer ({type(exc).__name__})")
    if health != 200:
        return Check("web", "fail", f"{mask_url(url)}/healthz answered {health}")
    if anonymous != 401:
        return Check("web", "fail", f"{mask_url(url)}/api/v1 answered {anonymous} without "
                     "credentials (expected 401): is this the console?")
    return Check("web", "ok", f"{mask_url(url)} answers, and refuses anonymous API calls",
                 data={"url": mask_url(url)})


def run_checks(
    settings: Settings,
    store: AuditStore,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Every check, in order; those that need Redis are skipped when it does not answer."""
    store.fail_fast()
    checks = [check_redis(store, settings.redis_url)]
    reachable = bool(checks[0].data)  # it answered INFO, whatever the verdict
    shell = effective_settings(settings)
    whose = Whose("this shell's (Redis did not answer)", shell)
    if not reachable:
        checks.append(Check("settings", "skip", "needs Redis (judged this shell's)"))
    else:
        try:
            now, beats = store.now(), read_heartbeats(store)
            whose = whose_settings(shell, beats, now)
            checks.append(check_settings(shell, whose, beats, now))
        except redis.RedisError as exc:
            checks.append(Check("settings", "fail",
                                f"Redis failed mid-check ({type(exc).__name__})"))
    needs_redis: Sequence[tuple[str, Callable[[AuditStore], Check]]] = (
        ("queues", check_queues), ("workers", check_workers))
    for name, run in needs_redis:
        if not reachable:
            checks.append(Check(name, "skip", "needs Redis"))
            continue
        try:
            checks.append(run(store))
        except redis.RedisError as exc:
            checks.append(Check(name, "fail", f"Redis failed mid-check ({type(exc).__name__})"))
    checks.append(check_archive(settings, store if reachable else None))
    checks.append(_care360_of(settings, whose, transport))
    checks.append(check_web(settings, transport))
    return checks


def failed(checks: Sequence[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
