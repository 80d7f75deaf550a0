"""docs/deploy.md's files, checked: the env example is the generated one, the units are sound.

The systemd units (`deploy/systemd/*.service`) are read by a small parser (sections, keys in
order, repeated keys kept) and held to what the deployment page promises: the settings file,
the `cancelq` user, a restart policy, journald, and a stop that lets the worker's warm
shutdown finish. Where `systemd-analyze` exists they are also verified by systemd itself,
with the install paths pointed at this Python's `bin` (where `celery` and `cancelq` are).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from cancelq.core import envfile
from cancelq.core.settings import DEFAULT_TIMEOUT_SECONDS, Settings, load_settings
from producers.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
BIN = "/opt/cancelq/venv/bin/"
APP = "/opt/cancelq/app"
ALIASES = {info.alias for info in Settings.model_fields.values()}

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> (key, value) in order; comments and blank lines skipped."""
    unit: Unit = {}
    section: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], [])
            continue
        assert section is not None and "=" in line, f"line {number}: {raw!r}"
        key, value = line.split("=", 1)
        section.append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: {found}"
    return found[0]


def test_the_env_example_is_the_generated_one() -> None:
    committed = (ROOT / "deploy" / "cancelq.env.example").read_text(encoding="utf-8")
    assert committed == envfile.render(), (
        "regenerate: python3 -m cancelq.core.envfile > deploy/cancelq.env.example")


def test_every_setting_has_a_note_and_a_line() -> None:
    assert envfile.missing_notes() == []
    assert set(envfile.NOTES) == ALIASES  # no note for a setting that is gone
    text = envfile.render()
    for alias in ALIASES:
        assert f"\n#{alias}=" in text


def test_the_example_is_an_environment_file_of_defaults() -> None:
    """Every line is a comment: the file as shipped changes nothing, and loads."""
    lines = (ROOT / "deploy" / "cancelq.env.example").read_text(encoding="utf-8").splitlines()
    assert all(not line or line.startswith("#") for line in lines)
    assert "#CARE360_TIMEOUT_SECONDS=10.0" in lines and "#CARE360_ALLOW_INSECURE=0" in lines


def test_the_units_are_the_ones_the_page_lists() -> None:
    names = {path.stem for path in UNITS}
    assert names == {"cancelq-worker", "cancelq-beat", "cancelq-metrics", "cancelq-flower",
                     "cancelq-archiver", "cancelq-web"}
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert all(f"{name}.service" in page for name in names)


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.stem)
def test_a_unit_has_what_every_service_needs(path: Path) -> None:
    unit = parse_unit(path.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Unit", "Description")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Service", "User") == "cancelq"
    assert one(unit, "Service", "EnvironmentFile") == "/etc/cancelq/cancelq.env"
    assert one(unit, "Service", "WorkingDirectory") == APP
    assert one(unit, "Service", "Restart") in ("on-failure", "always")
    assert one(unit, "Service", "StandardError") == "journal"
    assert one(unit, "Service", "KillSignal") in ("SIGTERM", "SIGINT")
    assert int(one(unit, "Service", "TimeoutStopSec")) >= 10
    for assignment in values(unit, "Service", "Environment"):
        name = assignment.split("=", 1)[0]
        assert name in ALIASES or name == "PYTHONUNBUFFERED", f"{path.name}: {name}"


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.stem)
def test_a_unit_starts_a_command_we_have(path: Path) -> None:
    command = one(parse_unit(path.read_text(encoding="utf-8")), "Service", "ExecStart").split()
    assert command[0].startswith(BIN) and command[0].removeprefix(BIN) in ("celery", "cancelq")
    if command[0].endswith("celery"):
        assert command[1:3] == ["-A", "worker"] and command[3] in ("worker", "beat", "flower")
        return
    verb = command[1]
    assert verb in cli.commands, f"no cancelq verb {verb!r}"


def test_the_worker_stops_warm_within_the_compose_grace_period() -> None:
    """SIGTERM is Celery's warm shutdown; only the main process gets it (it stops its
    siblings), and the stop waits as long as compose does, several call deadlines."""
    unit = parse_unit((ROOT / "deploy/systemd/cancelq-worker.service").read_text("utf-8"))
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "KillMode") == "mixed"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    grace = compose["services"]["worker"]["stop_grace_period"]
    stop = int(one(unit, "Service", "TimeoutStopSec"))
    assert f"{stop}s" == grace and stop >= 2 * DEFAULT_TIMEOUT_SECONDS
    assert "CV_API_KEY_FILE=%d/care360_api_key" in values(unit, "Service", "Environment")


def test_the_archiver_stops_as_on_ctrl_c() -> None:
    unit = parse_unit((ROOT / "deploy/systemd/cancelq-archiver.service").read_text("utf-8"))
    assert one(unit, "Service", "ExecStart").endswith("cancelq archive run --follow")
    assert one(unit, "Service", "KillSignal") == "SIGINT"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_verifies_the_units(tmp_path: Path) -> None:
    here = Path(sys.executable).parent
    if not (here / "celery").exists() or not (here / "cancelq").exists():
        pytest.skip(f"celery and cancelq are not installed beside {sys.executable}")
    for path in UNITS:
        text = path.read_text(encoding="utf-8").replace(BIN, f"{here}/")
        (tmp_path / path.name).write_text(text.replace(APP, str(ROOT)), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, tmp_path.iterdir()))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_example_dot_env_names_only_what_compose_reads() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    names = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert names and not set(names) - used, set(names) - used
    assert "CV_API_KEY" not in names  # the key is a file, never a value here


def test_the_cli_summary_names_every_verb() -> None:
    """docs/cli.md's command summary at the top lists every visible verb."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    summary = text[text.index("```sh"):text.index("```", text.index("```sh") + 5)]
    verbs = {name for name, command in cli.commands.items() if not command.hidden}
    listed = set(re.findall(r"^cancelq ([a-z]+)", summary, flags=re.MULTILINE))
    assert verbs <= listed, sorted(verbs - listed)
    assert {"doctor", "health", "metrics"} <= listed


def test_every_default_in_the_example_loads_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented as they are, the example's values are valid settings, and the defaults
    (an empty one means unset: it stays commented out)."""
    lines = (ROOT / "deploy" / "cancelq.env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line[1:].split("=", 1) for line in lines if re.match(r"#[A-Z0-9_]+=", line)]
    assert len(pairs) == len(ALIASES)
    for name, value in pairs:
        if value:
            monkeypatch.setenv(name, value)
    loaded = load_settings()
    for name, info in Settings.model_fields.items():
        if info.default is not None and not isinstance(info.default, SecretStr):
            assert getattr(loaded, name) == info.default, name
