"""Redis is reached through the store: outside `cancelq/store/`, no module calls a client.

A module breaks the rule when it reads a store's client (`store.redis`), takes or holds a
`redis.Redis`, or calls a method that only a Redis client has (`hget`, `zadd`, `pipeline`...).
Catching `redis.RedisError` is fine: what failed is the store's business, what to do about
it the caller's. Tests, `bench/` and `producers/dev/` (the demo's own Redis) are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Names only a Redis client (or its pipeline) has: a call of one is a raw Redis call.
REDIS_METHODS = frozenset({
    "pipeline", "execute_command", "hget", "hset", "hgetall", "hdel", "hmget", "hlen",
    "hincrby", "hscan_iter", "hexists", "zadd", "zrem", "zrange", "zrevrange", "zscore",
    "zcard", "zscan", "zscan_iter", "zrangebyscore", "lindex", "llen", "lpush", "rpush",
    "lrange", "lrem", "brpop", "pttl", "pexpire", "expire", "set_retry", "scan_iter",
    "evalsha", "register_script", "config_get", "dbsize", "flushdb", "ping", "send_command",
    "parse_response",
})

#: What may still reach Redis directly outside the store: module path -> why. A library that
#: needs a client, as `limits` does, gets it from a store module (`cancelq/store/rate_window.py`).
ALLOWED: dict[str, str] = {
    # kombu's Redis transport, subclassed: its fetch sends one EVALSHA on the channel's own
    # connection, in kombu's poll loop. That is the broker's client, not the store's: moving
    # it would split one kombu Channel across two layers.
    "worker/transport.py": "the broker transport itself",
}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "redis" and isinstance(
            node.ctx, ast.Load
        ) and not (isinstance(node.value, ast.Name) and node.value.id == "redis"):
            found.append(f"{node.lineno} .redis")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in REDIS_METHODS:
            found.append(f"{node.lineno} .{node.func.attr}()")
        elif isinstance(node, ast.Attribute) and node.attr == "Redis" and isinstance(
            node.value, ast.Name
        ) and node.value.id == "redis":
            found.append(f"{node.lineno} redis.Redis")
    return found


def _modules() -> list[Path]:
    paths = [*ROOT.glob("*.py")]
    for package in ("cancelq", "worker", "producers", "web"):
        paths.extend((ROOT / package).rglob("*.py"))
    return sorted(
        path for path in paths
        if not path.relative_to(ROOT).as_posix().startswith(("cancelq/store/", "producers/dev/"))
    )


def test_no_module_outside_the_store_calls_redis_directly() -> None:
    raw = [
        f"{path.relative_to(ROOT).as_posix()}:{offence}"
        for path in _modules()
        if path.relative_to(ROOT).as_posix() not in ALLOWED
        for offence in _offences(path)
    ]
    assert raw == [], "raw Redis calls outside cancelq/store/:\n" + "\n".join(raw)


def test_every_allowed_module_still_needs_it() -> None:
    """An entry whose module no longer calls Redis goes: the list only shrinks."""
    stale = [name for name in ALLOWED if not _offences(ROOT / name)]
    assert stale == []
