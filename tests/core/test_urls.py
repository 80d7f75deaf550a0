"""`cancelq.core.urls`: URL passwords masked everywhere, Redis and Care360 URLs checked."""

from __future__ import annotations

import logging

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cancelq.core.urls import (
    MaskURLs,
    check_care360_url,
    check_redis_url,
    host_of,
    is_loopback,
    mask_url,
    url_list,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:s3cret@h:6380/1", "rediss://user:***@h:6380/1"),
        ("sentinel://:pw1@a:26379;sentinel://:pw2@b:26379/0",
         "sentinel://:***@a:26379;sentinel://:***@b:26379/0"),
        ("Cannot connect to redis://:p%40ss@h:6379//: refused", "Cannot connect to "
         "redis://:***@h:6379//: refused"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("no url here: user:pw@host", "no url here: user:pw@host"),
        # issue 16: the password ends at the last `@`, and may hold ; / : % #
        ("redis://:Pa@ssw0rdTail@h:6379/0", "redis://:***@h:6379/0"),
        ("sentinel://:S3cr3t;x@a:26379;sentinel://:S3cr3t;x@b:26379/0",
         "sentinel://:***@a:26379;sentinel://:***@b:26379/0"),
        ("got 'redis://u:a/b:c%2#d@h:1/0' (x)", "got 'redis://u:***@h:1/0' (x)"),
        # no `@`: a `:` not followed by a port is a password without its host
        ("no host in 'redis://:S3cr3t'", "no host in 'redis://:***'"),
        ("redis://h:6379: refused", "redis://h:6379: refused"),
        ("got 'redis://h:6379' (<http://h:80>)", "got 'redis://h:6379' (<http://h:80>)"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        # ambiguous (a path with an `@`): more is masked, never less
        ("http://h:8080/path@x", "http://h:***@x"),
    ],
)
def test_mask_url(text: str, expected: str) -> None:
    assert mask_url(text) == expected


_password = st.text(
    alphabet=st.characters(blacklist_characters="/;@ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85"
                           "\u2028\u2029", blacklist_categories=("Cs", "Zs")),
    min_size=4, max_size=30,
)


@given(
    scheme=st.sampled_from(["redis", "rediss", "sentinel", "amqp", "https"]),
    user=st.text(alphabet="abcxyz_", max_size=8),
    password=_password,
    before=st.text(max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_property_no_password_survives_masking(
    scheme: str, user: str, password: str, before: str
) -> None:
    url = f"{scheme}://{user}:{password}@host.example:6379/0"
    text = f"{before} {url} trailing"
    masked = mask_url(text)
    assert f":{password}@" not in masked
    assert "host.example:6379/0" in masked


#: What people paste into a password unencoded (issue 16): every URL delimiter but space.
_hostile = st.text(alphabet="aZ9_-@:;/%#", min_size=1, max_size=24)


@given(scheme=st.sampled_from(["redis", "rediss", "sentinel", "amqp", "https"]),
       user=st.sampled_from(["", "ops"]), password=_hostile,
       quote=st.sampled_from(["", "'", '"']))
@settings(max_examples=500, deadline=None)
def test_property_hostile_passwords_are_masked_whole(
    scheme: str, user: str, password: str, quote: str
) -> None:
    url = f"{scheme}://{user}:{password}@host.example:6379/0"
    text = f"cannot reach {quote}{url}{quote}: refused"
    assert mask_url(text) == (f"cannot reach {quote}{scheme}://{user}:***@host.example:6379/0"
                              f"{quote}: refused")


@given(password=_hostile)
@settings(max_examples=300, deadline=None)
def test_property_sentinel_lists_mask_every_part(password: str) -> None:
    url = f"sentinel://:{password}@s1:26379;sentinel://:{password}@s2:26379/0"
    assert mask_url(url) == "sentinel://:***@s1:26379;sentinel://:***@s2:26379/0"
    assert url_list(url) == [f"sentinel://:{password}@s1:26379",
                             f"sentinel://:{password}@s2:26379/0"]


@given(before=_hostile, after=_hostile,
       host=st.sampled_from(["h:6379/0", "h:abc/0", "", "h:0", "h:6379/x"]))
@example(before="", after=";x", host="")  # the issue's `'redis://:S3cr3t'`
@settings(max_examples=300, deadline=None)
def test_property_a_bad_redis_url_error_holds_no_password_fragment(
    before: str, after: str, host: str
) -> None:
    """Whatever is wrong with the URL, the one-line reason never shows the password's middle."""
    password = f"{before}SeCrEt{after}"
    # no host at all: the password has no `@` (with one, what follows it is a host)
    url = f"sentinel://:{password}@{host};redis://:{password}@s2:26379" if host \
        else f"redis://:{password.replace('@', '')}"
    with pytest.raises(ValueError) as info:
        check_redis_url(url)
    assert "SeCrEt" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://:pw@h:6380/2", "unix:///run/redis.sock",
     "sentinel://h1:26379;sentinel://h2:26379/0", "redis://h"],
)
def test_good_redis_urls(url: str) -> None:
    check_redis_url(url)


@pytest.mark.parametrize("url", [
    "redis://:Pa;ss@h:6379/0", "redis://:Pa/ss@h:6379/0", "rediss://u:Pa?ss@h:6380/0",
    "redis://:Pa#ss@h", "sentinel://:Pa;ss@a:26379;sentinel://:Pa;ss@b:26379",
])
def test_a_password_kombu_would_cut_is_refused_without_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        check_redis_url(url)
    assert "percent-encode" in str(info.value) and "Pa" not in str(info.value)


def test_an_encoded_password_and_an_at_sign_are_fine() -> None:
    check_redis_url("redis://:Pa%3Bss%2F%23%3F@h:6379/0")
    check_redis_url("redis://:Pa@ss:w@h:6379/0")  # redis-py and kombu split at the last @


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo", "expected redis://"),
        ("http://127.0.0.1:8080/", "expected redis://"),
        ("redis://h:abc/0", "port must be a number"),
        ("redis://h:0/0", "port must be a number"),
        ("redis://h:6379/x", "database must be a number"),
        ("redis:///0", "no host"),
        ("sentinel://h:26379;redis://h2", "must be sentinel://"),
        ("", "must not be empty"),
    ],
)
def test_bad_redis_urls_say_why_and_mask_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        check_redis_url(url.replace("://", "://:topsecret@", 1) if "://" in url else url)
    assert says in str(info.value)
    assert "topsecret" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "allow", "says"),
    [
        ("foo", False, "http(s):// URL"),
        ("ftp://h", False, "http(s):// URL"),
        ("https://", False, "no host"),
        ("http://10.0.0.5:8360", False, "unencrypted"),
        ("http://simulator:8360", False, "unencrypted"),
        ("https://u:p@h", False, "user:password"),
        ("https://h?x=1", False, "query"),
        ("https://h:port", False, "port"),
    ],
)
def test_bad_care360_urls(url: str, allow: bool, says: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        check_care360_url(url, allow_insecure=allow)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://api.care360-next.carevalidate.com", False),
        ("http://127.0.0.1:8360", False),
        ("http://localhost:8360", False),
        ("http://[::1]:8360", False),
        ("http://simulator:8360", True),
    ],
)
def test_good_care360_urls(url: str, allow: bool) -> None:
    check_care360_url(url, allow_insecure=allow)


def test_loopback_and_host_of() -> None:
    assert is_loopback("127.0.0.9") and is_loopback("[::1]") and not is_loopback("10.0.0.1")
    assert host_of("https://api.example.com/v1/x?y") == "https://api.example.com"
    assert host_of("http://127.0.0.1:8360") == "http://127.0.0.1:8360"


def test_the_log_filter_masks_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.mask")
    caplog.handler.addFilter(MaskURLs())
    with caplog.at_level(logging.INFO, logger="test.mask"):
        logger.error("Cannot connect to %s: %s", "sentinel://:hunter2@s1:26379", "refused")
        try:
            raise ConnectionError("redis://:hunter2@h:6379/0 went away")
        except ConnectionError:
            logger.exception("failed")
    assert "hunter2" not in caplog.text
    assert "sentinel://:***@s1:26379" in caplog.text and "redis://:***@h:6379/0" in caplog.text
