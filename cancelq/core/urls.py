"""URLs in settings: checked once at start, and never shown with their password.

    mask_url(text)          every `scheme://user:password@` in `text` -> `scheme://user:***@`
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
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

MASK = "***"
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "sentinel"})
#: `scheme://[user]:password@` anywhere in a text; the password ends at the last `@` before
#: the host (a password may contain `@` only percent-encoded, but be generous).
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s;]*):(?P<pw>[^/\s;]*)@"
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def mask_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (the user is kept)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def check_redis_url(url: str) -> None:
    """Raise `ValueError` (one line, password masked) unless `url` is a usable Redis URL."""
    text = url.strip()
    if not text:
        raise ValueError("must not be empty")
    for part in (p.strip() for p in text.split(";") if p.strip()):
        _check_redis_part(part, sentinel_list=";" in text)


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
