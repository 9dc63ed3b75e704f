"""Running a Lua script: ``EVALSHA`` sent straight through the client, loaded on ``NOSCRIPT``.

redis-py's ``Script`` (``register_script``) does the same job with more steps on every call:
an import and a pipeline check, the keys and arguments copied into a tuple twice, then
``evalsha``'s own wrappers. Every store access is one script, so those steps were a sixth of
a cheap request's Redis call (about 24,000 instructions under callgrind, of 192,000).
``LuaScript`` keeps one ``Script`` for what it is good at: loading the text when a server
does not have it (a fresh server, a failover, ``SCRIPT FLUSH``) and running inside a
pipeline, which must know the scripts it holds to load them before ``EXEC``.

A ``NOSCRIPT`` answer means the script did not run, so running it again after loading it
cannot apply a write twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError


class LuaScript:
    """One Lua script on one client; calls are thread-safe, as the client's are."""

    def __init__(self, client: redis.Redis, text: str) -> None:
        self._script = client.register_script(text)
        #: The SHA-1 the server knows the script by.
        self.sha: str = self._script.sha
        # Looked up on each call, not kept: whatever wraps the client's execute_command
        # later (tracing, a test's fault injection) sees the scripts' commands too.
        self._client = client

    def __call__(
        self, keys: Sequence[str] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        """Run the script on the client it was made for, or queue it on the pipeline
        ``client``; load it first if the server answers ``NOSCRIPT``."""
        if client is not None:
            return self._script(keys=keys, args=args, client=client)
        try:
            return self._client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Load it where the command went (on a cluster, every primary), then run it.
            self.sha = self._script.sha = self._client.script_load(self._script.script)
            return self._client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
