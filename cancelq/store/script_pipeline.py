"""A pipeline that carries the store's scripts without redis-py's `SCRIPT EXISTS` round trip.

Why: redis-py's `Pipeline.execute` first asks `SCRIPT EXISTS` for every script queued on it,
in a round trip of its own, before each pipeline: one extra trip per finish, the real-time
path's busiest write (measured: one `SCRIPT` command per real-time job, 1 in 14 of the
worker's commands). Redis forgets a script only on a restart or a `SCRIPT FLUSH`, so asking
every time buys nothing. Here the pipeline is sent at once; a command that Redis answers
`NOSCRIPT` is sent again alone with its script's text (`EVAL` loads it), so each script still
runs exactly once, and the pipeline's other commands are untouched.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import NoScriptError


class ScriptPipeline(redis.client.Pipeline):
    """A non-transactional pipeline; a `NOSCRIPT` answer is mended, not raised."""

    def load_scripts(self) -> None:
        """Not asked in advance: `execute` mends a `NOSCRIPT` answer instead."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        texts: dict[str, Any] = {script.sha: script.script for script in self.scripts}
        replies: list[Any] = super().execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            args = stack[i][0]
            if isinstance(reply, NoScriptError) and args[0] == "EVALSHA" and args[1] in texts:
                replies[i] = self._run_alone(texts[args[1]], args[2:])
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    def _run_alone(self, text: Any, args: tuple[Any, ...]) -> Any:
        """The command again, by its script's text: loads it for the next pipelines too."""
        run: Any = self.immediate_execute_command  # redis-py leaves it untyped
        try:
            return run("EVAL", text, *args)
        except redis.RedisError as exc:
            return exc
        finally:
            self.reset()


def script_pipeline(client: redis.Redis) -> ScriptPipeline:
    """A `ScriptPipeline` on `client`'s connections (what `client.pipeline(False)` would be)."""
    return ScriptPipeline(client.connection_pool, client.response_callbacks, False, None)
