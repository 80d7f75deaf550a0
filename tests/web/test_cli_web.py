"""`cancelq web` refuses to start without credentials (one line, exit 2), and
`cancelq web hash-password` turns stdin into a hash WEB_USERS accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cancelq.core.errors import ConfigError
from cancelq.core.settings import load_settings
from producers.cli import main
from tests.producers.test_cli_bad_config import cli, one_line
from tests.web.conftest import SECRET, users_text
from web.app import create_app
from web.users import Verifier, parse_users


@pytest.mark.parametrize(("env", "says"), [
    ({"WEB_SECRET": SECRET}, "configuration error: WEB_USERS: no users: the web console "
                             "refuses to start without credentials"),
    ({"WEB_USERS": "USERS"}, "configuration error: WEB_SECRET: the web console needs a "
                             "session secret of at least 32 characters"),
])
def test_web_without_good_credentials_is_one_line_exit_2(env: dict[str, str], says: str) -> None:
    env = {k: v.replace("USERS", users_text()) if v == "USERS" else v for k, v in env.items()}
    done = cli("web", **env)
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert line.startswith("cancelq: ") and says in line
    assert "$argon2" not in line and SECRET not in line


def test_hash_password_reads_stdin_and_prints_a_hash_web_users_accepts() -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["web", "hash-password"], input="s3cret pass\n")
    assert done.exit_code == 0, done.output
    hashed = done.stdout.strip()
    assert hashed.startswith("$argon2id$") and "s3cret" not in done.stdout
    users = parse_users(f"ada:operator:{hashed}")
    assert Verifier(users).check("ada", "s3cret pass") is not None
    empty = runner.invoke(main, ["web", "hash-password"], input="")
    assert empty.exit_code == 2
    assert empty.stderr.strip() == "cancelq: password: empty (give it on stdin)"


@pytest.mark.parametrize(("env", "says"), [
    ({"WEB_USERS": "USERS", "WEB_SECRET": "short"}, "WEB_SECRET: the web console needs"),
    ({"WEB_USERS_FILE": "/nonexistent/users"}, "WEB_USERS_FILE: cannot read /nonexistent"),
    ({"WEB_USERS": "USERS", "WEB_SECRET_FILE": "/nonexistent/s"}, "WEB_SECRET_FILE: cannot"),
    ({"WEB_USERS": "ada:root:x", "WEB_SECRET": SECRET}, "WEB_USERS: entry 1 (ada): role"),
    ({"WEB_ADDRESS": "8080"}, "WEB_ADDRESS: not host:port"),
])
def test_the_app_refuses_to_build_without_good_credentials(
    env: dict[str, str], says: str, tmp_path: Path
) -> None:
    env = {k: users_text() if v == "USERS" else v for k, v in env.items()}
    with pytest.raises(ConfigError, match=re.escape(says)):  # the same refusals in process
        create_app(load_settings(**env))


def test_users_and_secret_files_win_over_the_values(tmp_path: Path) -> None:
    (tmp_path / "users").write_text(users_text().replace(" ", "\n") + "\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    settings = load_settings(WEB_USERS="x", WEB_SECRET="short",
                             WEB_USERS_FILE=str(tmp_path / "users"),
                             WEB_SECRET_FILE=str(tmp_path / "secret"))
    assert settings.require_web_secret().get_secret_value() == SECRET
    assert set(parse_users(settings.web_users_text())) == {"ada", "bob"}
