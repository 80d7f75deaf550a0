"""The console in-process (Starlette's TestClient) on fakeredis, with two cheap-hash users.

Hashes here use argon2's smallest cost so each sign-in takes a millisecond, not ~50 ms;
`verify` reads the cost from the hash, so the code under test is the production code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import argon2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cancelq.core.settings import load_settings
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.audit import AuditStore
from web.app import create_app

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORDS = {"ada": "ada-operator-pw", "bob": "bob-viewer-pw"}
SECRET = "s" * 40


def users_text() -> str:
    return (f"ada:operator:{CHEAP.hash(PASSWORDS['ada'])} "
            f"bob:viewer:{CHEAP.hash(PASSWORDS['bob'])}")


@pytest.fixture(scope="session")
def web_users() -> str:
    return users_text()


@pytest.fixture
def app(fake_store: AuditStore, web_users: str) -> FastAPI:
    settings = load_settings(WEB_USERS=web_users, WEB_SECRET=SECRET)
    return create_app(settings, ReadThrough(fake_store, None))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as anonymous:
        yield anonymous


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, name: str) -> str:
    """Sign `name` in; returns the session's CSRF token."""
    form = client.get("/login")
    answer = client.post("/login", data={"name": name, "password": PASSWORDS[name],
                                         "csrf_token": csrf_of(form.text), "next": "/"})
    assert answer.status_code == 200 and answer.url.path == "/", answer.text[:300]
    return csrf_of(answer.text)


@pytest.fixture
def operator(client: TestClient) -> tuple[TestClient, str]:
    return client, sign_in(client, "ada")


@pytest.fixture
def viewer(client: TestClient) -> tuple[TestClient, str]:
    return client, sign_in(client, "bob")
