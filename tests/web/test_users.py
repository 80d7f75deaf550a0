"""WEB_USERS: `name:role:hash` entries split at the first two colons, refused in one line."""

from __future__ import annotations

import pytest

from cancelq.core.errors import ConfigError
from tests.web.conftest import CHEAP
from web.users import Verifier, hash_password, parse_users


def test_entries_split_at_the_first_two_colons_and_keep_the_whole_hash() -> None:
    hashed = CHEAP.hash("pw")
    users = parse_users(f"  ada:operator:{hashed}\n\tbob:viewer:{hashed}  ")
    assert {n: (u.role, u.password_hash) for n, u in users.items()} == {
        "ada": ("operator", hashed), "bob": ("viewer", hashed)}
    assert users["ada"].can_replay and not users["bob"].can_replay


@pytest.mark.parametrize(("text", "says"), [
    ("", "no users"),
    ("ada", "entry 1 is not name:role:hash"),
    ("ada:operator", "entry 1 is not name:role:hash"),
    ("ada:admin:HASH", "role must be viewer or operator"),
    ("ada:viewer:plaintext-password", "not an argon2 hash"),
    ("a/b:viewer:HASH", "the name must be"),
    ("ada:viewer:HASH ada:operator:HASH", "entry 2: ada is named twice"),
])
def test_a_bad_entry_is_one_line_naming_the_entry_never_the_hash(text: str, says: str) -> None:
    text = text.replace("HASH", CHEAP.hash("pw"))
    with pytest.raises(ConfigError) as caught:
        parse_users(text)
    message = str(caught.value)
    assert message.startswith("WEB_USERS: ") and says in message and "\n" not in message
    assert "$argon2" not in message and "plaintext-password" not in message


def test_verifier_accepts_the_password_and_refuses_others_and_strangers() -> None:
    users = parse_users(f"ada:operator:{CHEAP.hash('right')}")
    verifier = Verifier(users)
    assert verifier.check("ada", "right") is users["ada"]
    assert verifier.check("ada", "wrong") is None
    assert verifier.check("nobody", "right") is None
    assert verifier.check("ada", "right", remember=True) is users["ada"]
    assert verifier.check("ada", "right", remember=True) is users["ada"]  # remembered
    assert verifier.check("ada", "wrong", remember=True) is None


def test_hash_password_makes_an_argon2id_hash_that_verifies() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    users = parse_users(f"ada:viewer:{hashed}")
    assert Verifier(users).check("ada", "correct horse") is not None
