"""`cancelq web` refuses to start without credentials (one line, exit 2), and
`cancelq web hash-password` turns stdin into a hash WEB_USERS accepts."""

from __future__ import annotations

import pytest

from tests.producers.test_cli_bad_config import cli, one_line
from tests.web.conftest import SECRET, users_text
from web.users import Verifier, parse_users


@pytest.mark.parametrize(("env", "says"), [
    ({"WEB_SECRET": SECRET}, "configuration error: WEB_USERS: no users: the web console "
                             "refuses to start without credentials"),
    ({"WEB_USERS": "USERS"}, "configuration error: WEB_SECRET: the web console needs a "
                             "session secret of at least 32 characters"),
    ({"WEB_USERS": "USERS", "WEB_SECRET": "short"}, "WEB_SECRET: the web console needs"),
    ({"WEB_USERS": "ada:root:x", "WEB_SECRET": SECRET}, "WEB_USERS: entry 1 (ada): role"),
    ({"WEB_USERS_FILE": "/nonexistent/users"}, "WEB_USERS_FILE: cannot read"),
    ({"WEB_ADDRESS": "8080"}, "configuration error: WEB_ADDRESS: not host:port"),
])
def test_web_without_good_credentials_is_one_line_exit_2(env: dict[str, str], says: str) -> None:
    env = {k: v.replace("USERS", users_text()) if v == "USERS" else v for k, v in env.items()}
    done = cli("web", **env)
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert line.startswith("cancelq: ") and says in line
    assert "$argon2" not in line and SECRET not in line


def test_hash_password_reads_stdin_and_prints_a_hash_web_users_accepts() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "producers.cli", "web", "hash-password"],
                          input="s3cret pass\n", capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    hashed = done.stdout.strip()
    assert hashed.startswith("$argon2id$") and "s3cret" not in done.stdout
    users = parse_users(f"ada:operator:{hashed}")
    assert Verifier(users).check("ada", "s3cret pass") is not None
    empty = subprocess.run([sys.executable, "-m", "producers.cli", "web", "hash-password"],
                           input="", capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert empty.returncode == 2 and empty.stderr.strip() == (
        "cancelq: password: empty (give it on stdin)")
