"""Pure checks of the ops configuration helpers: Flower's auth guard, Sentinel URLs."""

from __future__ import annotations

import pytest

from cancelq.core.errors import ConfigError
from cancelq.core.settings import load_settings
from cancelq.store.audit import audit_store
from cancelq.store.connections import is_sentinel_url, parse_sentinel_url
from worker.flower_auth import FlowerAuthError, check_auth


@pytest.mark.parametrize(
    "basic,auth,flag,mode",
    [
        (["ops:pw"], "", None, "basic"),
        (["ops:pw", "bot:pw2"], "", None, "basic"),
        (None, ".*@example\\.com", None, "oauth"),
        (None, "", "1", "insecure"),
        ([""], "", "true", "insecure"),
    ],
)
def test_flower_starts_only_with_auth_or_an_explicit_opt_out(
    basic: list[str] | None, auth: str, flag: str | None, mode: str
) -> None:
    assert check_auth(basic, auth, flag) == mode


@pytest.mark.parametrize(
    "basic,flag",
    [(None, None), ([""], None), (None, "0"), (["ops"], None), (["ops:"], "1"), ([":pw"], None)],
)
def test_flower_refuses_without_usable_credentials(basic: list[str] | None, flag: str | None
                                                   ) -> None:
    with pytest.raises(FlowerAuthError, match="FLOWER_BASIC_AUTH"):
        check_auth(basic, "", flag)


def test_sentinel_urls_as_kombu_spells_them() -> None:
    url = "sentinel://:s3cret@h1:26379;sentinel://h2:26380/2"
    assert is_sentinel_url(url) and not is_sentinel_url("redis://h1:6379/0")
    parsed = parse_sentinel_url(url)
    assert parsed.hosts == (("h1", 26379), ("h2", 26380))
    assert (parsed.db, parsed.password, parsed.username) == (2, "s3cret", None)
    assert parse_sentinel_url("sentinel://h1").hosts == (("h1", 26379),)


@pytest.mark.parametrize(
    "url", ["sentinel://h1:26379;redis://h2:6379", "sentinel://h1:x", "sentinel://h1/zero"]
)
def test_bad_sentinel_urls_are_one_line_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        parse_sentinel_url(url)


def test_a_sentinel_url_needs_the_master_name() -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        audit_store(load_settings(redis_url="sentinel://127.0.0.1:1"))
