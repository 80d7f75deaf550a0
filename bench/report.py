"""docs/benchmarks.md from one run's results: one table per scenario, targets beside values."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.footprint import TABLE_BYTES, TABLE_RSS, TABLE_TRIPS
from bench.latency import ROW as LATENCY_ROW
from bench.latency import TABLE as LATENCY_TABLE
from bench.results import Results
from bench.suite import Bench
from bench.throughput import BULK_ROW, REALTIME_ROW, SCRIPT_ROWS

THROUGHPUT, CPU, FAKE, INTAKE = "throughput", "cpu", "fake", "intake"
PACKAGES = ("celery", "kombu", "redis", "httpx", "aiohttp", "psutil")


@dataclass(frozen=True)
class Target:
    text: str
    met: Callable[[float], bool]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _met(target: Target | None, value: float | None) -> str:
    if target is None or value is None:
        return ""
    return "**met**" if target.met(value) else "**not met**"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def machine(b: Bench, load_before: tuple[float, ...], sizes: str) -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.split()[2].removeprefix("v=")
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PACKAGES)
    load = os.getloadavg()
    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {sizes}",
        f"- product: {b.checkout.describe()}",
        f"- machine: {os.cpu_count()} cores ({model}), load average "
        f"{load_before[0]:.2f} at the start and {load[0]:.2f} at the end (shared machine: "
        "other processes ran too, so compare rows of the same run, not runs)",
        f"- versions: Python {platform.python_version()}, redis-server {redis_version}, "
        f"{versions}",
        "",
    ]


def best_script(results: Results, table: str) -> float | None:
    values = [results.median(table, row, "jobs/s") for row in SCRIPT_ROWS.values()]
    known = [v for v in values if v is not None]
    return max(known) if known else None


def throughput_section(results: Results) -> list[str]:
    best = best_script(results, THROUGHPUT)
    targets = {BULK_ROW: Target(">= 2.0x the best script", lambda r: r >= 2.0),
               REALTIME_ROW: Target(">= 0.8x the best script", lambda r: r >= 0.8)}
    rows = []
    for row in results.rows(THROUGHPUT):
        rate = results.median(THROUGHPUT, row, "jobs/s")
        ratio = rate / best if rate is not None and best else None
        target = targets.get(row)
        rows.append([row, _fmt(rate), f"{_fmt(ratio, 2)}x",
                     _fmt(results.median(THROUGHPUT, row, "cpu ms/job"), 2),
                     _fmt(results.median(THROUGHPUT, row, "commands/job"), 1),
                     target.text if target else "", _met(target, ratio)])
    if not rows:
        return []
    header = ["what", "jobs/s", "vs the best script", "CPU ms/job (worker, or the script's "
              "whole process)", "Redis commands/job", "target", ""]
    return ["## Throughput (fake API at 50 ms)", "", *_table(header, rows)]


def cpu_section(results: Results) -> list[str]:
    target = Target("<= 1.0 ms", lambda v: v <= 1.0)
    rows = []
    for row in results.rows(CPU):
        cpu = results.median(CPU, row, "cpu ms/job")
        mine = target if row == REALTIME_ROW else None
        rows.append([row, _fmt(results.median(CPU, row, "jobs/s")), _fmt(cpu, 2),
                     _fmt(results.median(CPU, row, "commands/job"), 1),
                     mine.text if mine else "", _met(mine, cpu)])
    if not rows:
        return []
    header = ["what", "jobs/s", "CPU ms/job", "Redis commands/job", "target", ""]
    return ["## Worker CPU per job (real-time, fake API at 0 ms)", "",
            "CPU is the worker's process tree (psutil user + system) over the timed interval "
            "divided by the jobs; for the scripts, their whole process.", "",
            *_table(header, rows)]


def latency_section(results: Results, rows: int) -> list[str]:
    target = Target("p99 <= 250 ms", lambda v: v <= 250)
    p99 = results.median(LATENCY_TABLE, LATENCY_ROW, "p99 ms")
    values = [_fmt(results.median(LATENCY_TABLE, LATENCY_ROW, m))
              for m in ("p50 ms", "p99 ms", "max ms", "samples", "bulk drain s")]
    header = ["what", "p50 ms", "p99 ms", "max ms", "samples", "bulk drain s", "target", ""]
    return [f"## Real-time latency while {rows:,} bulk jobs drain (fake API at 50 ms)", "",
            "One `enqueue_cancellation()` every 0.1 s from the moment `cancelq bulk` starts "
            "until the bulk run is settled; latency = the audit record's settled_at - "
            "created_at.", "",
            *_table(header, [[LATENCY_ROW, *values, target.text, _met(target, p99)]]),
            "![real-time latency over time](benchmarks-latency.png)", ""]


RSS_METRICS = ("warm MB", "in retry MB", "queued + in retry MB")


def rss_verdict(results: Results, row: str) -> tuple[float | None, float | None, bool]:
    """(peak, growth over warm, met): "flat" is read as growth <= 25 MB."""
    known = [v for m in RSS_METRICS if (v := results.median(TABLE_RSS, row, m)) is not None]
    if not known:
        return None, None, False
    peak, growth = max(known), max(known) - known[0]
    return peak, growth, peak <= 200 and growth <= 25


def rss_section(results: Results, b: Bench) -> list[str]:
    row = next(iter(results.rows(TABLE_RSS)), None)
    if row is None:
        return []
    metrics = RSS_METRICS
    values = [results.median(TABLE_RSS, row, m) for m in metrics]
    _, growth, met = rss_verdict(results, row)
    counters = results.details.get("rss:counters", {})
    header = ["what", *metrics, "growth MB", "target", ""]
    return [f"## Worker RSS with {b.sizes.queued:,} jobs queued and {b.sizes.retrying:,} "
            "in retry", "",
            "After a warm-up of as many jobs as will be in retry; then every call answers "
            "500 (retries 600 s away), then every call hangs while `cancelq bulk` queues the "
            f"rest. Counters at the end: {counters}. \"Flat\" is read as growth <= 25 MB.", "",
            *_table(header, [[row, *(_fmt(v, 1) for v in values), _fmt(growth, 1),
                              "flat, <= 200 MB", "**met**" if met else "**not met**"]])]


def bytes_section(results: Results) -> list[str]:
    target = Target("<= 1 KB (1,024 B)", lambda v: v <= 1024)
    rows = []
    for row in results.rows(TABLE_BYTES):
        value = results.median(TABLE_BYTES, row, "bytes/job")
        mine = target if row == "cancelq" else None
        rows.append([row, _fmt(value), mine.text if mine else "", _met(mine, value)])
    lines = ["## Redis bytes per settled job", "",
             "`MEMORY USAGE key SAMPLES 0` of every key once the jobs are settled, divided by "
             "the jobs (warm-up included); the breakdown is per job.", "",
             *_table(["what", "bytes/job", "target", ""], rows)]
    for name, detail in sorted(results.details.items()):
        if name.startswith("keys:"):
            lines += [f"Keys of {name[5:]} ({detail['jobs']:,} jobs):", ""]
            lines += _table(["key pattern", "keys", "bytes/job"], [
                [f"`{p}`", _fmt(n), _fmt(t / detail["jobs"], 1)]
                for p, (n, t) in sorted(detail["groups"].items(), key=lambda i: -i[1][1])])
    return lines


def commands_section(results: Results) -> list[str]:
    lines = ["## Redis commands per job", "",
             "INFO commandstats over the timed interval (all clients: producer, worker, the "
             "bench's own polls subtracted), divided by the jobs.", ""]
    rows = []
    for name, delta in sorted(results.details.items()):
        if not name.startswith("commands:"):
            continue
        _, table, row = name.split(":", 2)
        total = sum(delta.values())
        per = results.median(table, row, "commands/job")
        top = sorted(delta.items(), key=lambda i: -i[1])[:8]
        scale = (per or 0) / total if total else 0
        rows.append([f"{row} ({'0' if table == CPU else '50'} ms API)", _fmt(per, 1),
                     ", ".join(f"{c} {n * scale:.2f}" for c, n in top)])
    if not rows:
        return []
    lines += _table(["what", "commands/job", "most frequent (per job, last run)"], rows)
    return lines + round_trips_section(results)


def round_trips_section(results: Results) -> list[str]:
    rows = []
    for row in results.rows(TABLE_TRIPS):
        detail = results.details[f"trips:{row}"]
        top = sorted(detail["counts"].items(), key=lambda i: -i[1])[:10]
        rows.append([row, _fmt(results.median(TABLE_TRIPS, row, "client commands/job"), 1),
                     ", ".join(f"{c} {n / detail['jobs']:.2f}" for c, n in top)])
    if not rows:
        return []
    return ["Commands sent by clients (not those run inside Lua scripts; a pipeline's commands "
            "count one each), from MONITOR over an untimed batch after the last run (the "
            "bench's polls subtracted from the total, not from the breakdown):", "",
            *_table(["what", "client commands/job", "by command, per job"], rows)]


def simple_section(results: Results, table: str, title: str, metrics: list[str],
                   target: Target | None = None, intro: str = "") -> list[str]:
    rows = []
    for row in results.rows(table):
        values = [results.median(table, row, m) for m in metrics]
        rows.append([row, *(_fmt(v, 3 if "ms" in m else 0) for v, m in zip(values, metrics,
                                                                           strict=True)),
                     target.text if target else "", _met(target, values[0])])
    if not rows:
        return []
    return [f"## {title}", "", *([intro, ""] if intro else []),
            *_table(["what", *metrics, "target", ""], rows)]


def profile_section(results: Results) -> list[str]:
    profiles: dict[str, dict[str, Any]] = results.details.get("profile") or {}
    lines: list[str] = []
    for path, profile in profiles.items():
        samples = profile["samples"][0][1]
        api = "0 ms" if path == "real-time" else "50 ms"
        lines += [f"## Where the worker's CPU goes (py-spy, {path} path, {api} API)", "",
                  f"{samples:,} samples of the worker's busy threads; % of samples.", ""]
        for kind in ("self", "total"):
            lines += _table([f"function ({kind})", "%"],
                            [[f"`{name}`", f"{pct:.1f}"] for name, pct in profile[kind][:25]])
    return lines


def all_values(results: Results) -> list[str]:
    rows = [[table, row, metric, ", ".join(_fmt(v, 2) for v in values)]
            for (table, row, metric), values in results.values.items()]
    return ["## Every repeat's values", "", *_table(["table", "row", "metric", "values"], rows)]


HOW_TO_RUN = [
    "Regenerate with `python -m bench` (about 15 minutes; `--quick`: a few minutes, one "
    "repeat, small sizes; `--checkout PATH` measures another checkout's worker and producers "
    "with this suite; `--only throughput,cpu,...`; `--profile` adds a py-spy profile). It "
    "starts its own redis-server on a free port, the fake Care360 API (bench/fake_api.py, an "
    "aiohttp server answering the spec's 200 body), `celery -A worker worker` with default "
    "flags, `CARE360_RATE_LIMIT=0` and `CARE360_ALLOW_INSECURE=1`, and the producers. Values "
    "are medians of the repeats; ratios are to the faster of the two scripts in the same run.",
    "",
]


def render(b: Bench, load_before: tuple[float, ...], sizes: str) -> str:
    r = b.results
    lines = ["# Benchmarks", "", *HOW_TO_RUN, *machine(b, load_before, sizes),
             *summary_section(b)]
    lines += simple_section(r, FAKE, "The fake Care360 API alone",
                            ["req/s", "fake cpu ms/req", "client cpu ms/req"],
                            intro="So that it is not the bottleneck: one aiohttp client "
                                  "process against the fake, before the other scenarios "
                                  "start (no other bench process running).")
    lines += throughput_section(r)
    lines += cpu_section(r)
    lines += latency_section(r, b.sizes.latency_rows) if r.rows(LATENCY_TABLE) else []
    lines += rss_section(r, b)
    lines += bytes_section(r) if r.rows(TABLE_BYTES) else []
    lines += commands_section(r)
    lines += simple_section(r, INTAKE, f"Bulk intake ({b.sizes.intake_rows:,} rows)",
                            ["rows/s"], Target(">= 10,000 rows/s", lambda v: v >= 10_000),
                            intro="`cancelq bulk` with no worker running; the time of a "
                                  "1-row file (start-up) is subtracted.")
    lines += profile_section(r)
    lines += all_values(r)
    return "\n".join(lines)


def _summary_row(scenario: str, target: str, value: float | None, shown: str,
                 met: bool) -> list[str]:
    verdict = "" if value is None else ("**met**" if met else "**not met**")
    return [scenario, target, "not run" if value is None else shown, verdict]


def summary_section(b: Bench) -> list[str]:
    """The issue's targets, each beside what this run measured."""
    r = b.results
    best = best_script(r, THROUGHPUT)

    def ratio(row: str) -> float | None:
        rate = r.median(THROUGHPUT, row, "jobs/s")
        return rate / best if rate is not None and best else None

    bulk, realtime = ratio(BULK_ROW), ratio(REALTIME_ROW)
    cpu = r.median(CPU, REALTIME_ROW, "cpu ms/job")
    p99 = r.median(LATENCY_TABLE, LATENCY_ROW, "p99 ms")
    peak, growth, rss_met = rss_verdict(r, next(iter(r.rows(TABLE_RSS)), ""))
    size = r.median(TABLE_BYTES, "cancelq", "bytes/job")
    intake = r.median(INTAKE, "cancelq bulk (no worker)", "rows/s")
    rows = [
        _summary_row(f"bulk path, {b.sizes.bulk_rows:,} rows, 50 ms", ">= 2.0x the best script",
                     bulk, f"{_fmt(bulk, 2)}x", (bulk or 0) >= 2.0),
        _summary_row(f"real-time path, {b.sizes.realtime_jobs:,} calls, 50 ms",
                     ">= 0.8x the best script", realtime, f"{_fmt(realtime, 2)}x",
                     (realtime or 0) >= 0.8),
        _summary_row("worker CPU per job, real-time, 0 ms", "<= 1.0 ms", cpu,
                     f"{_fmt(cpu, 2)} ms", (cpu or 99) <= 1.0),
        _summary_row(f"real-time p99 while {b.sizes.latency_rows:,} bulk jobs drain",
                     "<= 250 ms", p99, f"{_fmt(p99)} ms", (p99 or 1e9) <= 250),
        _summary_row(f"worker RSS, {b.sizes.queued:,} queued + {b.sizes.retrying:,} in retry",
                     "flat, <= 200 MB", peak, f"peak {_fmt(peak)} MB, growth {_fmt(growth, 1)} MB",
                     rss_met),
        _summary_row("Redis bytes per settled job", "<= 1 KB", size, f"{_fmt(size)} B",
                     (size or 1e9) <= 1024),
        _summary_row("bulk intake", ">= 10,000 rows/s", intake, f"{_fmt(intake)} rows/s",
                     (intake or 0) >= 10_000),
    ]
    return ["## Targets (issue 9)", "", *_table(["scenario", "target", "measured", ""], rows)]
