"""The CLI as an operator reads it: widths, short ids and prefixes, times, exit codes, CSV.

The store is fakeredis with the real Lua scripts (the `cli_store` fixture puts it behind
`store_from_env`), so every command runs exactly as installed, in-process via CliRunner.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator

import click
import fakeredis
import pytest
from click.testing import CliRunner, Result

from cancelq.bulk.runs import FORMULA_STARTS, formula_safe
from cancelq.store.audit import AuditStore
from cancelq.store.keys import Keys
from producers.cli import main
from tests.producers.seed import FORMULA_REASON, MARKUP_REASON, Seeded, add_job, finish, seed

WIDTHS = (80, 120, 200)


@pytest.fixture
def cli_store(monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis) -> AuditStore:
    store = AuditStore(fake_redis, Keys("c360"))
    monkeypatch.setattr("producers.cli.common.audit_store", lambda settings: store)
    return store


@pytest.fixture
def seeded(cli_store: AuditStore) -> Seeded:
    return seed(cli_store)


def cli(*args: str, columns: int | None = None) -> Result:
    env = {"COLUMNS": str(columns)} if columns else {}
    return CliRunner().invoke(main, list(args), env=env)


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


# -- tables that fit ----------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_audit_fits_the_width_and_always_shows_state_and_outcome(
    seeded: Seeded, width: int
) -> None:
    result = cli("audit", columns=width)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert widest(out) <= width, out
    for word in ("settled", "dead", "queued", "retries_exhausted", "cancelled",
                 "invalid_request"):
        assert word in out, (width, out)
    assert seeded.dead[:8] in out and seeded.dead not in out  # short ids by default
    assert "UTC" in out and time.strftime("%H:%M:", time.gmtime()) in out
    assert ("case" in out) == (width >= 120)  # low-priority columns only where they fit


@pytest.mark.parametrize("width", WIDTHS)
def test_dlq_list_fits_and_says_why_once(seeded: Seeded, width: int) -> None:
    result = cli("dlq", "list", columns=width)
    assert result.exit_code == 0, result.output
    assert widest(result.stdout) <= width, result.stdout
    assert "retries_exhausted" in result.stdout and seeded.dead[:8] in result.stdout
    assert "Service Unavailable" in result.stdout and "HTTP 503: HTTP 503" not in result.stdout
    letters = json.loads(cli("dlq", "list", "--json").stdout)
    assert [letter["why"] for letter in letters] == ["HTTP 503: Service Unavailable"]
    assert len(json.loads(cli("dlq", "list", "--since", "1h", "--json").stdout)) == 1
    assert json.loads(cli("dlq", "list", "--until", "1h", "--json").stdout) == []


def test_full_ids_and_piped_width(seeded: Seeded) -> None:
    piped = cli("audit")  # CliRunner is no terminal and sets no COLUMNS: 80, not 240
    assert widest(piped.stdout) <= 80 and "retries_exhausted" in piped.stdout
    full = cli("audit", "--full-ids", columns=200)
    assert seeded.dead in full.stdout and seeded.queued in full.stdout


def test_a_footer_says_when_limit_cut_the_list(seeded: Seeded) -> None:
    cut = cli("audit", "--limit", "2", columns=120)
    assert "more match" in cut.stdout and "--limit" in cut.stdout
    assert "2 job(s)" in cut.stdout
    whole = cli("audit", "--limit", "4", columns=120)
    assert "more match" not in whole.stdout and "4 job(s)" in whole.stdout
    assert len(json.loads(cli("audit", "--limit", "2", "--json").stdout)) == 2


def test_user_text_with_markup_is_printed_as_typed(seeded: Seeded) -> None:
    shown = cli("status", seeded.markup, columns=120)
    assert shown.exit_code == 0, shown.output
    assert MARKUP_REASON in shown.stdout and "bad [/x] body [red]" in shown.stdout
    wide = cli("audit", columns=200)
    assert wide.exit_code == 0 and "[/x]" in wide.stdout


def test_status_fits_80_columns(seeded: Seeded) -> None:
    shown = cli("status", seeded.dead[:8], columns=80)
    assert shown.exit_code == 0, shown.output
    assert widest(shown.stdout) <= 80 and "retries_exhausted" in shown.stdout


# -- job ids: prefixes in, short ids out ---------------------------------------------------


def test_any_unique_prefix_names_the_job(seeded: Seeded) -> None:
    for text in (seeded.cancelled[:6], seeded.cancelled[:8].upper(), seeded.cancelled[:11],
                 seeded.cancelled.replace("-", "")[:12]):
        result = cli("status", text, "--json")
        assert result.exit_code == 0, (text, result.output)
        assert json.loads(result.stdout)["job_id"] == seeded.cancelled


def test_bad_ambiguous_and_unknown_ids_are_one_line_with_their_codes(
    cli_store: AuditStore,
) -> None:
    twins = [f"abcd1234-0000-4000-8000-{n:012d}" for n in (1, 20)]
    for job_id in twins:
        add_job(cli_store, job_id=job_id)
    cases = [("hello", 2, "not a job id"), ("ab", 2, "at least 4"),
             ("abcd", 2, "matches several jobs"), ("ffff0000", 1, "no job"),
             (str(uuid.uuid4()), 1, "no job"), ("abcd-1234", 2, "hyphens")]
    for text, code, words in cases:
        result = cli("status", text)
        assert result.exit_code == code, (text, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output
    assert cli("status", twins[1][:-1]).exit_code == 0  # long enough to be unique


def test_short_ids_are_unique_among_the_listed_rows(cli_store: AuditStore) -> None:
    twins = [f"abcd1234-0000-4000-8000-{n:012d}" for n in (11, 20)]
    for job_id in twins:
        add_job(cli_store, job_id=job_id)
    out = cli("audit", columns=120).stdout
    assert "abcd1234-0000-4000-8000-000000000011" not in out
    assert "abcd1234-0000-4000-8000-00000000001" in out  # as long as needed, no longer


def test_dlq_replay_takes_prefixes(seeded: Seeded, cli_store: AuditStore) -> None:
    result = cli("dlq", "replay", seeded.dead[:8], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["job_id"] for r in report["results"]] == [seeded.dead]
    assert report["results"][0]["status"] == "replayed"
    refused = cli("dlq", "replay", seeded.cancelled[:8], "ffff0000")
    assert refused.exit_code == 1 and "not dead" in refused.stderr
    assert "cancelq: ffff0000  no such job" in refused.stderr  # reported per id, as before
    assert "cancelq: nope  no such job" in cli("dlq", "replay", "nope").stderr
    other_dead = add_job(cli_store)
    finish(cli_store, other_dead, status=503, error="HTTP 503", outcome="retries_exhausted",
           dead=True)
    digit = "1" if seeded.dead[9] == "0" else "0"
    add_job(cli_store, job_id=seeded.dead[:9] + digit + seeded.dead[10:])
    twin = cli("dlq", "replay", other_dead, seeded.dead[:4])  # ambiguous: nothing is done
    assert twin.exit_code == 2 and twin.stderr.count("\n") == 1 and "several" in twin.stderr
    assert json.loads(cli("status", other_dead, "--json").stdout)["state"] == "dead"


def test_dlq_replay_json_help_names_what_it_prints(seeded: Seeded) -> None:
    help_text = " ".join(cli("dlq", "replay", "--help").stdout.split())
    report = json.loads(cli("dlq", "replay", seeded.dead[:8], "--dry-run", "--json").stdout)
    for key in (*report, *report["results"][0]):
        assert key in help_text, key


# -- times --------------------------------------------------------------------------------


def test_since_and_until_read_zones_naive_as_utc_and_ages(cli_store: AuditStore) -> None:
    old = add_job(cli_store, now=1_700_000_000.0)  # 2023-11-14T22:13:20Z
    new = add_job(cli_store)

    def ids(*args: str) -> set[str]:
        result = cli("audit", "--json", *args)
        assert result.exit_code == 0, result.output
        return {job["job_id"] for job in json.loads(result.stdout)}

    assert ids("--since", "15m") == {new}
    assert ids("--until", "1h") == {old}
    assert ids("--since", "2023-11-14T22:13:20") == {old, new}  # naive: UTC
    assert ids("--since", "2023-11-14T22:13:21") == {new}
    assert ids("--since", "2023-11-14T23:13:20+01:00", "--until", "2023-11-14T22:13:20Z") == {old}
    assert ids("--since", "2023-11-14", "--until", "2023-11-15") == {old}
    assert ids("--since", "1d", "--until", "2d") == set()


@pytest.mark.parametrize("value", ["yesterday", "15 minutes", "2023-13-01", "-2h"])
def test_a_bad_time_is_one_line_naming_the_option(cli_store: AuditStore, value: str) -> None:
    result = cli("audit", "--since", value)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--since" in lines[0], result.stderr


def test_help_says_naive_times_are_utc() -> None:
    text = " ".join(cli("audit", "--help").stdout.split())
    assert "no zone means UTC" in text and "15m" in text


# -- exit codes, waits --------------------------------------------------------------------


def test_stats_for_an_unknown_run_fails_with_one_line(seeded: Seeded) -> None:
    result = cli("stats", "--run", "nope")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "no run 'nope'" in result.stderr
    assert json.loads(cli("stats", "--run", seeded.run_id, "--json").stdout)["jobs"] == 3


def test_status_wait_exit_codes_by_outcome(seeded: Seeded) -> None:
    assert cli("status", seeded.cancelled, "--wait", "1").exit_code == 0
    dead = cli("status", seeded.dead, "--wait", "1")
    assert dead.exit_code == 1 and "retries_exhausted" in dead.stderr
    late = cli("status", seeded.queued[:8], "--wait", "0.3")
    assert late.exit_code == 3
    assert late.stderr.strip().splitlines() == [  # piped: no spinner, just the line
        f"cancelq: --wait: job {seeded.queued} still queued after 0.3 s"]


def _finish_later(store: AuditStore, job_ids: list[str], *, dead: str | None = None) -> None:
    def work() -> None:
        for job_id in job_ids:
            time.sleep(0.2)
            if job_id == dead:
                finish(store, job_id, status=503, error="HTTP 503: Service Unavailable",
                       outcome="retries_exhausted", dead=True)
            else:
                finish(store, job_id, status=200, error=None, outcome="cancelled")

    threading.Thread(target=work, daemon=True).start()


@pytest.fixture
def run_jobs(cli_store: AuditStore) -> Iterator[list[str]]:
    yield [add_job(cli_store, run_id="r-follow") for _ in range(4)]


def test_run_follow_ends_with_the_summary_and_exit_0(
    cli_store: AuditStore, run_jobs: list[str]
) -> None:
    _finish_later(cli_store, run_jobs)
    result = cli("run", "r-follow", "--follow", "--wait", "60", columns=80)
    assert result.exit_code == 0, result.output
    assert "finished: 4/4 done" in result.stdout and "cancelled" in result.stdout
    # the status lines only (a warning another thread prints is not the command's output)
    progress_lines = [line for line in result.stderr.splitlines()
                      if line.startswith("run r-follow:")]
    assert progress_lines, result.stderr
    last = progress_lines[-1]
    assert "jobs/s" in last and "ETA" in last, result.stderr
    assert "4/4 done" in last and "cancelled 4" in last, result.stderr


def test_run_follow_exit_1_when_a_job_ends_otherwise(
    cli_store: AuditStore, run_jobs: list[str]
) -> None:
    _finish_later(cli_store, run_jobs, dead=run_jobs[1])
    result = cli("run", "r-follow", "--follow", "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["outcomes"] == {"cancelled": 3, "retries_exhausted": 1}
    assert "1 of 4 job(s) ended otherwise than cancelled" in result.stderr


def test_run_follow_exit_3_with_a_line_when_time_runs_out(
    cli_store: AuditStore, run_jobs: list[str]
) -> None:
    result = cli("run", "r-follow", "--follow", "--wait", "0.3")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "cancelq: run r-follow not finished after 0.3 s: 4 of 4 job(s) still open")
    assert cli("run", "nope", "--follow").exit_code == 1


# -- every verb: --help, --version --------------------------------------------------------


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if command.hidden:  # `cancelq flower`: a one-line pointer to Celery's command
            continue
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_help_has_examples_and_the_exit_codes() -> None:
    paths = list(_commands(main))
    assert len(paths) >= 12
    for path in paths:
        text = cli(*path, "--help", columns=80).stdout
        assert widest(text) <= 80, (path, text)
        assert "Examples:" in text and "cancelq " in text.split("Examples:")[1], path
        assert "Exit codes: 0 ok, 1 failed" in text and "3 timed out" in text, path
    assert "_CANCELQ_COMPLETE=bash_source cancelq" in cli("--help", columns=120).stdout


def test_shell_completion_is_generated_by_the_command() -> None:
    script = CliRunner().invoke(main, [], prog_name="cancelq",
                                env={"_CANCELQ_COMPLETE": "bash_source"})
    assert script.exit_code == 0 and "_cancelq_completion" in script.stdout
    states = CliRunner().invoke(main, [], prog_name="cancelq", env={
        "_CANCELQ_COMPLETE": "bash_complete", "COMP_WORDS": "cancelq audit --state ",
        "COMP_CWORD": "3"})
    assert "plain,settled" in states.stdout and "plain,dead" in states.stdout


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("cancelq ")


def test_a_bare_group_prints_its_help() -> None:
    for args in ([], ["dlq"]):
        result = cli(*args)
        assert result.exit_code == 2 and result.stderr.startswith("Usage: ")
        assert "Commands:" in result.stderr and "cancelq: " not in result.stderr


def test_usage_errors_are_one_line_exit_2() -> None:
    for args in (["nope"], ["audit", "--limit", "0"], ["status"], ["audit", "--state", "x"]):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- CSV ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_formula_cells_get_an_apostrophe(start: str) -> None:
    assert formula_safe(f"{start}1+1") == f"'{start}1+1"
    assert formula_safe("plain =text") == "plain =text" and formula_safe("") == ""


def test_audit_csv_and_run_csv_are_formula_safe(seeded: Seeded, tmp_path: object) -> None:
    result = cli("audit", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4
    by_id = {row["job_id"]: row for row in rows}
    assert by_id[seeded.queued]["reason"] == "'" + FORMULA_REASON
    assert by_id[seeded.dead]["last_http_status"] == "503"
    exported = cli("run", seeded.run_id, "--csv", "-")
    run_rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {row["reason"] for row in run_rows} == {"'" + FORMULA_REASON, ""}
    assert cli("audit", "--csv", "--json").exit_code == 2
