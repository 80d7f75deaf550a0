"""The console's users: parsed from WEB_USERS, passwords checked against argon2 hashes.

An entry is `name:role:hash`, split at the first two colons (the hash keeps whatever
follows). Roles: `viewer` reads, `operator` reads and replays. Hashes are argon2 (made by
`cancelq web hash-password`): a memory-hard hash, so a stolen WEB_USERS costs an attacker
real work per guess. An unknown name is checked against a dummy hash of the same cost, so
a wrong name and a wrong password take the same time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cancelq.core.errors import ConfigError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
FIELD = "WEB_USERS"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: successful Basic-auth checks remembered (argon2 costs ~50 ms a check, by design)
CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str

    @property
    def can_replay(self) -> bool:
        return self.role == "operator"

    @property
    def fingerprint(self) -> str:
        """Changes with the password: a session made before a password change is void."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def parse_users(text: str, field: str = FIELD) -> dict[str, User]:
    """Every entry of `text`, or a `ConfigError` naming the entry (never echoing a hash)."""
    users: dict[str, User] = {}
    for number, entry in enumerate(text.split(), 1):
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise ConfigError(f"{field}: entry {number} is not name:role:hash")
        name, role, password_hash = parts
        if not _NAME.match(name):
            raise ConfigError(f"{field}: entry {number}: the name must be 1-64 letters, digits "
                              f"or _.@- (got {name[:64]!r})")
        if role not in ROLES:
            raise ConfigError(f"{field}: entry {number} ({name}): role must be viewer or "
                              f"operator (got {role[:20]!r})")
        if not _is_argon2(password_hash):
            raise ConfigError(f"{field}: entry {number} ({name}): not an argon2 hash (make one "
                              "with: cancelq web hash-password)")
        if name in users:
            raise ConfigError(f"{field}: entry {number}: {name} is named twice")
        users[name] = User(name, role, password_hash)
    if not users:
        raise ConfigError(f"{field}: no users: the web console refuses to start without "
                          "credentials (docs/web.md)")
    return users


def _is_argon2(text: str) -> bool:
    try:
        argon2.extract_parameters(text)
    except InvalidHashError:
        return False
    return True


def hash_password(password: str) -> str:
    """An argon2id hash with argon2-cffi's default (RFC 9106) parameters."""
    return argon2.PasswordHasher().hash(password)


class Verifier:
    """Checks a name and password against the users; remembers recent successes."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        first = next(iter(users.values()))
        params = argon2.extract_parameters(first.password_hash)
        self._dummy = argon2.PasswordHasher.from_parameters(params).hash(
            secrets.token_urlsafe(16))
        self._hasher = argon2.PasswordHasher()
        self._ok: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, name: str, password: str, *, remember: bool = False) -> User | None:
        """The user, if the password is theirs; None otherwise (same time either way)."""
        user = self.users.get(name)
        token = hashlib.sha256(f"{name}\0{password}\0{user and user.password_hash}".encode())
        key = token.hexdigest()
        if remember and user is not None:
            with self._lock:
                if key in self._ok:
                    self._ok.move_to_end(key)
                    return user
        try:
            self._hasher.verify(user.password_hash if user else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is not None and remember:
            with self._lock:
                self._ok[key] = None
                while len(self._ok) > CACHE_SIZE:
                    self._ok.popitem(last=False)
        return user
