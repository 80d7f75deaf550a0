"""URLs in settings: checked once at start, and never shown with their password.

    mask_url(text)          every `scheme://user:password@` in `text` -> `scheme://user:***@`
    url_list(text)          a `;`-separated list of URLs (Sentinel), split as `mask_url` does
    check_redis_url(url)    REDIS_URL's shape (scheme, host, port, db); a one-line reason
    check_archive_url(url)  ARCHIVE_URL's shape: postgresql+psycopg:// with a host and a
                            database, or sqlite:/// with a path
    with_password(url, pw)  a URL with a password from a secret file put in its user part
    check_care360_url(url)  CARE360_BASE_URL: http(s), a host, https unless loopback

`mask_url` is the one function every printer of a URL goes through (the settings' repr, the
Celery configuration the worker reports to Flower, Sentinel error lines, the demo), and it
works on free text as well as on one URL, so a URL inside an error message is masked too.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

MASK = "***"
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "sentinel"})
#: Where a URL starts in free text: a whole scheme word and `://`.
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
#: Where a URL in free text ends: whitespace (a password holds none; see `mask_url`).
_URL_END = re.compile(r"\s")
#: After a host's `:`: a port (and a path, or the punctuation of the sentence around it).
_PORT_AND_PATH = re.compile(r"(?:\d{1,5}(?:/.*)?)?[:,.;)\]'\">]*\Z", re.DOTALL)
#: Quotes and brackets that close the sentence around a URL, kept after a `***`.
_CLOSERS = "'\")]>"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def mask_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (the user is kept).

    The one masking function of the project: every printer of a URL goes through it.
    A password may hold any of `@ : ; / % #` unencoded (people paste them so), so the
    userinfo of a URL ends at its *last* `@`, searched up to the first whitespace, or up
    to `;` and the same scheme again (the next URL of a Sentinel list). Where that is
    ambiguous (a path with an `@` in it), more is masked, never less: a hidden host is
    a lesser harm than a shown password. What it cannot know: a password holding
    whitespace, or `;` followed by its own URL's scheme and `://`.
    """
    out: list[str] = []
    pos = 0
    for start, end in _url_spans(text):
        out.append(text[pos:start])
        out.append(_mask_authority(text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _url_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of what follows `scheme://` in each URL of `text` (see `mask_url`)."""
    pos = 0
    while (found := _SCHEME.search(text, pos)) is not None:
        pos = _url_end(text, found.end(), found["scheme"])
        yield found.end(), pos


def _url_end(text: str, start: int, scheme: str) -> int:
    """Where the URL whose authority begins at `start` ends (see `mask_url`)."""
    space = _URL_END.search(text, start)
    end = len(text) if space is None else space.start()
    same = re.search(f";\\s*{re.escape(scheme)}://", text[start:end], re.IGNORECASE)
    return end if same is None else start + same.start()


def _mask_authority(rest: str) -> str:
    """`user:password@host...` -> `user:***@host...`; unchanged without a password.

    Without an `@`, a `:` after no host, or not followed by a port, is a password whose
    host was forgotten (`redis://:S3cr3t`): masked too.
    """
    at = rest.rfind("@")
    if at < 0:
        return _mask_hostless(rest)
    user, sep, _password = rest[:at].partition(":")
    return f"{user}:{MASK}@{rest[at + 1:]}" if sep else rest


def _mask_hostless(rest: str) -> str:
    host_end = rest.find("]") + 1 if rest.startswith("[") else 0
    colon = rest.find(":", host_end)
    if colon < 0:
        return rest
    after = rest[colon + 1:]
    if colon > 0 and _PORT_AND_PATH.match(after):  # a host, then its port: no password
        return rest
    closers = after[len(after.rstrip(_CLOSERS)):]
    return f"{rest[:colon]}:{MASK}{closers}"


def url_list(text: str) -> list[str]:
    """The URLs of a `;`-separated list (Sentinel), split where `mask_url` splits them:
    at a `;` followed by a scheme, so a `;` inside a password does not cut a URL in two
    (and then print half of it as a "URL" with the password's first half in it)."""
    parts = re.split(r";(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)", text)
    return [p.strip() for p in parts if p.strip()]


def check_redis_url(url: str) -> None:
    """Raise `ValueError` (one line, password masked) unless `url` is a usable Redis URL."""
    text = url.strip()
    if not text:
        raise ValueError("must not be empty")
    _check_userinfo(text)
    parts = url_list(text)
    for part in parts:
        _check_redis_part(part, sentinel_list=len(parts) > 1)


#: Characters a user or password must percent-encode in REDIS_URL: kombu cuts a broker URL
#: at every `;` (a failover list), and `/ ? #` end the host part for every URL parser, which
#: then reads the password's head as a port and prints it in its error.
_MUST_ENCODE = {";": "%3B", "/": "%2F", "?": "%3F", "#": "%23"}


def _check_userinfo(text: str) -> None:
    for start, end in _url_spans(text):
        at = text.rfind("@", start, end)
        bad = sorted({c for c in text[start:max(at, start)] if c in _MUST_ENCODE})
        if bad:
            codes = ", ".join(f"{c!r} as {_MUST_ENCODE[c]}" for c in bad)
            raise ValueError(f"the user or password holds {', '.join(map(repr, bad))} "
                             f"unencoded; percent-encode it ({codes}): {mask_url(text)!r}")


def _check_redis_part(part: str, *, sentinel_list: bool) -> None:
    split = _split(part)
    scheme = split.scheme.lower()
    if scheme not in REDIS_SCHEMES or "://" not in part:
        raise ValueError(
            "expected redis://, rediss://, unix:// or sentinel:// "
            f"(e.g. redis://localhost:6379/0), got {mask_url(part)!r}"
        )
    if sentinel_list and scheme != "sentinel":
        raise ValueError(f"every ';'-separated part must be sentinel:// ({mask_url(part)!r})")
    if scheme == "unix":
        if not split.path:
            raise ValueError(f"unix:// needs a socket path ({mask_url(part)!r})")
        return
    if not split.hostname:
        raise ValueError(f"no host in {mask_url(part)!r}")
    bad_port = f"the port must be a number from 1 to 65535 ({mask_url(part)!r})"
    try:
        port = split.port
    except ValueError:
        raise ValueError(bad_port) from None
    if port == 0:
        raise ValueError(bad_port)
    db = split.path.strip("/")
    if db and not (db.isascii() and db.isdigit() and int(db) < 1_000_000):
        raise ValueError(f"the database must be a number, as in /0 ({mask_url(part)!r})")


ARCHIVE_SCHEMES = frozenset({"postgresql+psycopg", "postgresql", "sqlite"})


def check_archive_url(url: str) -> None:
    """Raise `ValueError` (one line, password masked) unless `url` names a database the
    archive can use: PostgreSQL through psycopg 3 (`postgresql://` means the same), with a
    host and a database name, or SQLite with a file path."""
    text = url.strip()
    split = _split(text)
    scheme = split.scheme.lower()
    if scheme not in ARCHIVE_SCHEMES or "://" not in text:
        raise ValueError(
            "expected postgresql+psycopg://user@host:5432/db or sqlite:///path/archive.db, "
            f"got {mask_url(text)!r}"
        )
    if scheme == "sqlite":
        if not split.path.strip("/"):
            raise ValueError(f"sqlite:/// needs a file path ({mask_url(text)!r})")
        return
    if not split.hostname:
        raise ValueError(f"no host in {mask_url(text)!r}")
    try:
        split.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(
            f"the port must be a number from 1 to 65535 ({mask_url(text)!r})"
        ) from None
    if not split.path.strip("/"):
        raise ValueError(f"no database name in {mask_url(text)!r} (as in .../cancelq)")


def with_password(url: str, password: str) -> str:
    """`url` with `password` (percent-encoded) after its user, unless it has one already."""
    split = _split(url)
    if not password or split.password is not None or not split.username:
        return url
    user, host = split.netloc.split("@", 1)
    return urlunsplit(split._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        raise ValueError(f"not a URL ({exc}): {mask_url(url)!r}") from None


def check_care360_url(url: str, *, allow_insecure: bool) -> None:
    """Raise `ValueError` unless `url` is http(s) with a host, and https unless loopback
    (or `allow_insecure`): over plain HTTP the API key would cross the network readable."""
    split = _split(url.strip())
    if split.scheme.lower() not in ("http", "https") or "://" not in url:
        raise ValueError(f"must be an http(s):// URL with a host, got {mask_url(url)!r}")
    if not split.hostname:
        raise ValueError(f"no host in {mask_url(url)!r}")
    try:
        _ = split.port
    except ValueError:
        raise ValueError(f"the port must be a number from 1 to 65535 ({mask_url(url)!r})") \
            from None
    if split.username is not None or split.password is not None:
        raise ValueError("must not carry user:password (the key goes in CV_API_KEY)")
    if split.query or split.fragment:
        raise ValueError(f"must not have a query or fragment ({mask_url(url)!r})")
    if split.scheme.lower() == "http" and not allow_insecure and not is_loopback(split.hostname):
        raise ValueError(
            f"plain http:// to {split.hostname} would send the API key unencrypted; use "
            "https://, or set CARE360_ALLOW_INSECURE=1 on a trusted network"
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves the machine."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, for a log line (no path, no user, no password)."""
    split = urlsplit(url)
    host = split.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{split.port}" if split.port else ""
    return f"{split.scheme}://{host}{port}"


class MaskURLs(logging.Filter):
    """A logging filter that masks URL passwords in the message and its traceback text.

    Installed on the worker's and beat's handlers, so a line a library writes with a URL in
    it (kombu's "Cannot connect to sentinel://:password@...", a Sentinel error) is masked
    like ours.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_url(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_url(record.exc_text)
        return True


def mask_logging(logger: logging.Logger) -> None:
    """Put `MaskURLs` on every handler of `logger` (filters on a handler see every record
    it emits, propagated ones included)."""
    for handler in logger.handlers:
        if not any(isinstance(f, MaskURLs) for f in handler.filters):
            handler.addFilter(MaskURLs())
