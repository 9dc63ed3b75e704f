"""The knowledge base's reload state in Redis: the version to serve, and who serves what.

Every Redis command of a reload is here (keys in ``keys.py``), one single-key command each,
so the same code runs on one server, Sentinel or Cluster:

- ``bump``: ``INCR`` of the version (``flask kb reload``);
- ``current``: ``GET`` of the version (each worker, about once a second);
- ``report``: ``HSET`` of the worker's own field, then ``EXPIRE`` of the hash, so the hash
  vanishes when every worker is gone (one round trip, a pipeline);
- ``workers``: ``HGETALL``, then ``HDEL`` of the fields nobody refreshed within
  ``stale_after`` seconds (a worker that died without saying so).

Redis before 7.4 has no TTL per hash field, so each field carries the time it was written
(``reported_at``, epoch seconds) and readers judge freshness by it: hosts' clocks must
agree to within the staleness window, as NTP keeps them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis

from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.sessions.keys import KNOWLEDGE_VERSION_KEY, KNOWLEDGE_WORKERS_KEY


class KnowledgeVersions:
    """The reload version and the workers' reports, over one shared redis-py client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def current(self) -> int:
        """The version workers should serve: 0 until the first reload."""
        with _unavailable():
            return int(self.client.get(KNOWLEDGE_VERSION_KEY) or 0)

    def bump(self) -> int:
        """Ask every worker to reload: the new version."""
        with _unavailable():
            return int(self.client.incr(KNOWLEDGE_VERSION_KEY))

    def report(self, worker: str, served: Mapping[str, Any], ttl: int) -> None:
        """Record what ``worker`` serves now; the hash lives ``ttl`` s past the last report."""
        entry = json.dumps({**served, "reported_at": time.time()}, separators=(",", ":"))
        with _unavailable():
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(KNOWLEDGE_WORKERS_KEY, worker, entry)
            pipe.expire(KNOWLEDGE_WORKERS_KEY, ttl)
            pipe.execute()

    def forget(self, worker: str) -> None:
        """Drop ``worker``'s report (it is shutting down)."""
        with _unavailable():
            self.client.hdel(KNOWLEDGE_WORKERS_KEY, worker)

    def workers(self, stale_after: float) -> dict[str, dict[str, Any]]:
        """Every live worker's report, by worker id; stale and unreadable fields are dropped."""
        with _unavailable():
            fields = self.client.hgetall(KNOWLEDGE_WORKERS_KEY)
        live: dict[str, dict[str, Any]] = {}
        dead: list[str] = []
        now = time.time()
        for worker, raw in fields.items():
            try:
                entry = json.loads(raw)
                fresh = now - float(entry["reported_at"]) <= stale_after
            except (ValueError, TypeError, KeyError):
                fresh = False
            if fresh:
                live[worker] = entry
            else:
                dead.append(worker)
        if dead:
            with _unavailable():
                self.client.hdel(KNOWLEDGE_WORKERS_KEY, *dead)
        return dict(sorted(live.items()))


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn redis-py's errors into the domain's ``StoreUnavailable``."""
    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
