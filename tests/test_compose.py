"""docker-compose.yml, checked without Docker: parsed with PyYAML and held against the code.

Every command and healthcheck must resolve to a real module, console script or Celery
subcommand of this project; every environment name must be one `Settings` knows (or one of
a short, explicit list); every service has a healthcheck; Redis keeps its data (AOF) and
never evicts; the API key goes in as a secret file, never as a value.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cancelq.core.settings import Settings
from tests.conftest import ROOT
from worker.healthcheck import BEAT_PIDFILE, CHECKS

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
#: Environment names that are not settings: Python's own, and nothing else.
NOT_SETTINGS = frozenset({"PYTHONUNBUFFERED"})
#: Commands that come with a third-party image, not from this project.
IMAGE_TOOLS = {"redis": {"redis-server", "redis-cli"}, "postgres": {"postgres", "pg_isready"}}
#: The environment a third-party image reads (its own names, not cancelq settings).
IMAGE_ENV = {"postgres": {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD_FILE"}}
SECRETS_DIR = "/run/secrets/"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves anchors and <<
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def setting_names() -> set[str]:
    return {field.alias or name for name, field in Settings.model_fields.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the ["NAME=value", ...] form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def console_scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project["scripts"]
    return scripts


def celery_subcommands() -> set[str]:
    from celery.bin.celery import celery

    return set(celery.commands) | {ep.name for ep in entry_points(group="celery.commands")}


def resolve(argv: list[str], service: str) -> str:
    """What the command runs, checked to exist; raises AssertionError if it does not."""
    assert argv, f"{service}: empty command"
    program, *rest = argv
    if program in ("sh", "/bin/sh") and rest[:1] == ["-c"]:
        script = rest[1]
        assert "exec " in script, f"{service}: a shell command must exec the real program"
        return resolve(shlex.split(script.rsplit("exec ", 1)[1]), service)
    if program in ("python", "python3") and rest[:1] == ["-m"]:
        module = rest[1]
        assert importlib.util.find_spec(module), f"{service}: no module {module}"
        if module == "worker.healthcheck":
            assert rest[2] in CHECKS, f"{service}: no healthcheck role {rest[2]!r}"
        return f"module {module}"
    if program == "celery":
        from celery import Celery
        from celery.app.utils import find_app

        app = rest[rest.index("-A") + 1]
        assert isinstance(find_app(app), Celery), f"{service}: -A {app} finds no Celery app"
        subcommand = next(arg for arg in rest[rest.index("-A") + 2:] if not arg.startswith("-"))
        assert subcommand in celery_subcommands(), f"{service}: no celery {subcommand}"
        return f"celery {subcommand}"
    if program in console_scripts():
        target = console_scripts()[program]
        module_name, _, attr = target.partition(":")
        group = getattr(importlib.import_module(module_name), attr)
        assert isinstance(group, click.Group)
        assert rest and rest[0] in group.commands, f"{service}: no `{program} {rest[:1]}`"
        return f"{program} {rest[0]}"
    assert program in IMAGE_TOOLS.get(service, set()), f"{service}: unknown program {program}"
    return f"image tool {program}"


def test_every_service_has_a_healthcheck_that_resolves(
    services: dict[str, dict[str, Any]]
) -> None:
    assert set(services) >= {"redis", "postgres", "worker", "beat", "flower", "web",
                             "simulator"}
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name}: no healthcheck"
        test = check["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck form {test[0]}"
        argv = shlex.split(test[1]) if test[0] == "CMD-SHELL" else list(test[1:])
        resolve(argv, name)


def test_every_command_resolves_to_the_project(services: dict[str, dict[str, Any]]) -> None:
    ran = {}
    for name, service in services.items():
        command = service.get("command")
        assert command, f"{name}: say what runs, explicitly"
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        ran[name] = resolve(argv, name)
        if name not in IMAGE_TOOLS:
            assert service.get("build") == ".", f"{name}: not built from the Dockerfile"
    assert ran == {
        "redis": "image tool redis-server",
        "postgres": "image tool postgres",
        "worker": "celery worker",
        "beat": "celery beat",
        "flower": "celery flower",
        "web": "cancelq web",
        "simulator": "cancelq simulator",
    }


def test_every_environment_name_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    known = setting_names() | NOT_SETTINGS
    for name, service in services.items():
        unknown = set(environment(service)) - known - IMAGE_ENV.get(name, set())
        assert not unknown, f"{name}: environment names no setting knows: {sorted(unknown)}"


def test_redis_keeps_its_data_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(str(v).endswith(":/data") for v in services["redis"].get("volumes", []))


def test_the_key_is_a_secret_file_never_a_value(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = compose["secrets"]
    for name, service in services.items():
        env = environment(service)
        assert "CV_API_KEY" not in env, f"{name}: the key as an environment value"
        assert "SIMULATOR_API_KEY" not in env, f"{name}: the key as an environment value"
        for secret in service.get("secrets", []):
            assert "file" in declared[secret], f"secret {secret} is not a file"
    worker = services["worker"]
    path = environment(worker)["CV_API_KEY_FILE"]
    assert path.startswith(SECRETS_DIR)
    secret = path.removeprefix(SECRETS_DIR)
    assert secret in worker["secrets"]
    assert secret in services["simulator"]["secrets"]  # the dev simulator accepts that key


def test_flower_is_behind_auth_with_the_project_guard(
    services: dict[str, dict[str, Any]]
) -> None:
    flower = services["flower"]
    env = environment(flower)
    assert "FLOWER_BASIC_AUTH" in env and "FLOWER_UNAUTHENTICATED_API" not in env
    assert "FLOWER_INSECURE_NO_AUTH" not in env
    conf = next(a for a in flower["command"] if a.startswith("--conf=")).removeprefix("--conf=")
    dockerfile = DOCKERFILE.read_text()
    workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.M)
    assert workdir and conf == f"{workdir.group(1)}/flowerconfig.py"
    assert re.search(r"^COPY .*flowerconfig\.py", dockerfile, re.M)
    assert (ROOT / "flowerconfig.py").exists()
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    # Flower binds loopback unless told: in its container it must take the published port
    assert "--address=0.0.0.0" in flower["command"]
    assert all(resolved(str(p), {}).startswith("127.0.0.1:") for p in flower["ports"])


_DEFAULT = re.compile(r"\$\{(?P<name>\w+)(?P<op>:?-)(?P<default>[^}]*)\}")


def resolved(value: str, env: dict[str, str]) -> str:
    """What compose makes of `${NAME:-default}` / `${NAME-default}` given `env`."""

    def one(match: re.Match[str]) -> str:
        name, op, default = match["name"], match["op"], match["default"]
        if name in env and (env[name] or op == "-"):
            return env[name]
        return default

    return _DEFAULT.sub(one, value)


def settings_of(service: dict[str, Any], env: dict[str, str]) -> Settings:
    values = {k: resolved(v, env) for k, v in environment(service).items()}
    values = {k: v for k, v in values.items() if k in setting_names() and v != ""}
    values.pop("CV_API_KEY_FILE", None)  # a file inside the container
    return Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["worker", "beat", "flower", "web"])
def test_compose_defaults_are_valid_settings_calling_care360_over_https(
    services: dict[str, dict[str, Any]], role: str
) -> None:
    """With nothing set, every service's environment passes Settings' checks, and the
    worker sends the key to CARE360_ENV's https URL, never over plain http."""
    settings = settings_of(services[role], {})
    assert settings.care360_base_url.startswith("https://"), settings.care360_base_url
    assert settings.care360_allow_insecure is False
    assert settings.queue_prefix == ""  # today's queue names


def test_the_dev_profile_reaches_the_simulator_only_when_allowed(
    services: dict[str, dict[str, Any]]
) -> None:
    simulator = services["simulator"]
    assert simulator["profiles"] == ["dev"]
    dev = {"CARE360_BASE_URL": "http://simulator:8360", "CARE360_ALLOW_INSECURE": "1"}
    assert settings_of(services["worker"], dev).care360_base_url == "http://simulator:8360"
    assert "--port 8360" in simulator["command"][-1]
    with pytest.raises(ValueError, match="CARE360_BASE_URL"):
        settings_of(services["worker"], {"CARE360_BASE_URL": "http://simulator:8360"})
    assert "simulator" not in services["worker"].get("depends_on", {})  # not in production


def test_beat_and_the_healthcheck_agree_on_the_pidfile(
    services: dict[str, dict[str, Any]]
) -> None:
    assert f"--pidfile={BEAT_PIDFILE}" in services["beat"]["command"]


def test_the_dockerfile_copies_what_the_package_needs() -> None:
    dockerfile = DOCKERFILE.read_text()
    for needed in ("pyproject.toml", "README.md", "worker", "producers", "simulator",
                   "celeryconfig.py"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", dockerfile, re.M), needed
    assert re.search(r"^USER (?!root)", dockerfile, re.M), "run as a non-root user"


def test_the_image_sources_exist() -> None:
    for path in ("worker", "producers", "simulator", "celeryconfig.py", "flowerconfig.py",
                 "pyproject.toml"):
        assert Path(ROOT / path).exists(), path


def test_the_worker_healthcheck_proves_consumption(services: dict[str, dict[str, Any]]) -> None:
    """`cancelq health --this-host`: whatever the node name, judged by heartbeat and queue age."""
    from cancelq.ops.health import HEARTBEAT_SECONDS
    from producers.cli.health import health

    check = services["worker"]["healthcheck"]
    assert check["test"][:3] == ["CMD", "cancelq", "health"]
    params = health.make_context("health", list(check["test"][3:])).params  # unknown: raises
    assert params["this_host_only"] is True and not params["nodes"]
    assert params["max_age"] >= 5 * HEARTBEAT_SECONDS  # a few missed beats are not a death
    assert _seconds(check["timeout"]) < _seconds(check["interval"])


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_the_worker_archives_to_the_postgres_service_with_a_secret_password(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    worker, postgres = services["worker"], services["postgres"]
    assert worker["depends_on"]["postgres"] == {"condition": "service_healthy"}
    settings = settings_of(worker, {})
    assert settings.archive_url == "postgresql+psycopg://cancelq@postgres:5432/cancelq"
    password_file = environment(worker)["ARCHIVE_PASSWORD_FILE"]
    secret = password_file.removeprefix(SECRETS_DIR)
    assert secret in worker["secrets"] and secret in postgres["secrets"]
    assert environment(postgres)["POSTGRES_PASSWORD_FILE"] == password_file
    assert "file" in compose["secrets"][secret]
    assert settings_of(worker, {"ARCHIVE_URL": ""}).archive_url is None  # opt out
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])


def test_the_web_console_takes_its_credentials_from_secret_files_and_binds_loopback(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    web = services["web"]
    env = environment(web)
    assert "WEB_USERS" not in env and "WEB_SECRET" not in env  # never values: `$` in hashes
    for name in ("WEB_USERS_FILE", "WEB_SECRET_FILE"):
        secret = env[name].removeprefix(SECRETS_DIR)
        assert env[name].startswith(SECRETS_DIR) and secret in web["secrets"]
        assert "file" in compose["secrets"][secret]
    assert "CV_API_KEY_FILE" not in env and "care360_api_key" not in web["secrets"]
    assert settings_of(web, {}).web_host_port == ("0.0.0.0", 8080)
    assert all(resolved(str(p), {}).startswith("127.0.0.1:") for p in web["ports"])
    assert all(str(p).endswith(":8080") for p in web["ports"])


def test_the_image_holds_every_package_it_installs() -> None:
    dockerfile = DOCKERFILE.read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.M), package
    assert re.search(r"^RUN pip install '\.\[web\]'", dockerfile, re.M)  # `cancelq web` runs
