"""Schema v1 of the audit store, frozen: today's scripts as Redis ran them (commit 24369ce).

`library.lua` is the generated prelude and `lib.lua` of that release, once; each other
`*.lua` is one script's own text. Together they are the source Redis ran, so they keep
writing the v1 layout whatever `cancelq/store/keys.py` and `lua/` become. `v1_store` is an
`AuditStore` whose scripts are these: every write it makes (enqueue, begin, finish, reject,
replay...) is what a v1 deployment wrote, which the upgrade test
(`tests/store/test_upgrade.py`) and `python -m bench.footprint --store-only` read back after
`cancelq migrate`.
"""

from __future__ import annotations

from pathlib import Path

import redis

from cancelq.store.audit import AuditStore
from cancelq.store.keys import Keys
from cancelq.store.scripts import ScriptName, Scripts

V1_DIR = Path(__file__).resolve().parent
#: the scripts of v1, as they were named then
V1_SCRIPTS: tuple[ScriptName, ...] = (
    "archived", "begin", "breaker", "defer", "enqueue", "enqueue_many", "finish", "promote",
    "reap", "reject", "republish", "renew", "replay", "reserve_slot", "trim",
)


class V1Scripts(Scripts):
    """The store's script registry, loaded from this directory instead of `lua/`."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        library = (V1_DIR / "library.lua").read_text(encoding="utf-8")
        self._scripts = {
            name: client.register_script(
                library + (V1_DIR / f"{name}.lua").read_text(encoding="utf-8"))
            for name in V1_SCRIPTS
        }


def v1_store(client: redis.Redis, keys: Keys | None = None) -> AuditStore:
    """An `AuditStore` that writes schema v1 (reads are the current code's)."""
    store = AuditStore(client, keys)
    store.scripts = V1Scripts(client)
    return store
