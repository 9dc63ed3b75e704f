"""Operator commands over the session key layout: scans, statistics, export/import, TTLs.

The request path never comes here; the admin stats endpoint and ``flask sessions`` do. It
uses the same key layout (``keys.py``), scripts (``scripts.py``) and encoding
(``codec.py``) as the store, so the two cannot drift apart.

- Scans are ``SCAN MATCH <pattern> COUNT <n>`` through redis-py's ``scan_iter``, never KEYS:
  they do not block Redis, and ``RedisCluster.scan_iter`` walks every primary.
- Per-session commands are one Lua script on the session's own keys (one hash tag), so the
  script is atomic and valid on a cluster (one slot).
- Ratings are found by a SCAN of feedback keys (only sessions someone rated), then one
  read-only script per session for its rated answers and the questions before them.
- Write logs and Idempotency-Key records are not sessions: the meta glob never matches
  them, so counts and stats ignore them; ``purge`` deletes them (they share the prefix);
  export/import carry messages only, and an import leaves a session's logged records in
  place for DELETE to find.
- TTL invariant: every session key expires. ``set_ttl(..., None)`` (PERSIST) is the one,
  explicit exception an operator can ask for, and it lasts only until the session is next
  used through the API, whose scripts re-arm the normal TTL on every access.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from chatbot_sessions.domain import SESSION_DOCUMENT_FORMAT, RatedAnswer, SessionDocument
from chatbot_sessions.exceptions import SessionNotFound, StoreUnavailable
from chatbot_sessions.sessions import scripts
from chatbot_sessions.sessions.codec import (
    decode_feedback,
    decode_message,
    encode_message,
    message_from_wire,
)
from chatbot_sessions.sessions.ids import parse_session_id
from chatbot_sessions.sessions.keys import (
    ALL_PATTERN,
    FEEDBACK_PATTERN,
    KEY_PREFIX,
    META_PATTERN,
    session_id_of_feedback,
    session_id_of_meta,
    session_keys,
)
from chatbot_sessions.sessions.lua import LuaScript
from chatbot_sessions.sessions.store import SessionStore
from chatbot_sessions.timestamps import iso_from_ms, ms_from_iso

#: SCAN's COUNT hint and the size of each follow-up pipeline / UNLINK batch.
SCAN_COUNT = 1000
#: Upper bounds (seconds, inclusive) of the TTL histogram; one more bucket holds the rest.
TTL_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)

Progress = Callable[[int], None]


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class SessionStats:
    """Live sessions and how long they have left; ``buckets[i]`` counts TTLs up to
    ``TTL_BUCKETS[i]`` seconds, and the last entry those above the largest bound."""

    sessions: int
    persistent: int
    buckets: tuple[int, ...]
    bounds: tuple[int, ...] = TTL_BUCKETS

    @property
    def histogram(self) -> list[dict[str, int | None]]:
        """``[{"le": seconds or None (above every bound), "count": n}, ...]``."""
        bounds: list[int | None] = [*self.bounds, None]
        return [{"le": le, "count": n} for le, n in zip(bounds, self.buckets, strict=True)]


@dataclass(frozen=True)
class MemoryReport:
    """``INFO memory`` essentials per Redis node and the sum of ``used_memory``; or, when
    the server refuses INFO (an ACL, the embedded store), None and the reason."""

    used_memory: int | None
    nodes: dict[str, dict[str, Any]]
    error: str | None = None

    def as_document(self) -> dict[str, Any]:
        """``{"usedMemory", "nodes"[, "error"]}``, as the stats endpoint and CLI print it."""
        document: dict[str, Any] = {"usedMemory": self.used_memory, "nodes": self.nodes}
        if self.error:
            document["error"] = self.error
        return document


@dataclass(frozen=True)
class AdminReport:
    """What an operator looks at during an incident: the TTL statistics, Redis memory and
    how long the scan took. The stats endpoint and ``flask sessions stats`` show the same."""

    stats: SessionStats
    memory: MemoryReport
    scan_ms: float


_MEMORY_FIELDS = (
    "used_memory",
    "used_memory_human",
    "used_memory_peak",
    "used_memory_peak_human",
    "used_memory_rss",
    "maxmemory",
    "maxmemory_human",
    "maxmemory_policy",
    "mem_fragmentation_ratio",
)


class SessionAdmin:
    """Scan-wide and per-session operator commands, over the store's client and key layout."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.client = store.client
        self._snapshot = LuaScript(self.client, scripts.SNAPSHOT)
        self._restore = LuaScript(self.client, scripts.RESTORE)
        self._set_ttl = LuaScript(self.client, scripts.SET_TTL)
        self._rated = LuaScript(self.client, scripts.RATED)

    # -- scans -------------------------------------------------------------------------

    def _meta_keys(self) -> Iterator[str]:
        for key in self.client.scan_iter(match=META_PATTERN, count=SCAN_COUNT):
            # The pattern already excludes the other keys of a session; the id check also
            # drops any stray key that happens to fit the glob without being one of ours.
            if session_id_of_meta(key) is not None:
                yield key

    def iter_session_ids(self) -> Iterator[str]:
        """Every live session id, in SCAN order (a session may appear twice during a
        rehash, as SCAN allows; counts are exact when the keyspace is not resizing)."""
        with self.store.redis_errors():
            for key in self._meta_keys():
                yield session_id_of_meta(key)  # type: ignore[misc]

    def count(self, progress: Progress | None = None) -> int:
        """Number of sessions (meta keys only), by SCAN with a COUNT hint."""
        total = 0
        for _ in self.iter_session_ids():
            total += 1
            if progress and total % SCAN_COUNT == 0:
                progress(total)
        return total

    def stats(self, progress: Progress | None = None) -> SessionStats:
        """Count sessions and bucket their TTLs: one SCAN pass, one TTL pipeline per batch."""
        buckets = [0] * (len(TTL_BUCKETS) + 1)
        sessions = persistent = 0
        with self.store.redis_errors():
            for batch in _chunks(self._meta_keys(), SCAN_COUNT):
                pipe = self.client.pipeline(transaction=False)
                for key in batch:
                    pipe.ttl(key)
                for ttl in pipe.execute():
                    if ttl == -2:  # expired between SCAN and TTL
                        continue
                    sessions += 1
                    if ttl == -1:
                        persistent += 1
                    else:
                        buckets[bisect.bisect_left(TTL_BUCKETS, ttl)] += 1
                if progress:
                    progress(sessions)
        return SessionStats(sessions, persistent, tuple(buckets))

    def report(self) -> AdminReport:
        """Stats (one SCAN pass), memory, and the scan's duration, in one report."""
        started = time.perf_counter()
        stats = self.stats()
        scan_ms = (time.perf_counter() - started) * 1000
        return AdminReport(stats, self.memory(), round(scan_ms, 2))

    def memory(self) -> MemoryReport:
        """``INFO memory`` of the server, or of every primary when the client is a cluster."""
        # A cluster client would ask one node only by default: ask every primary.
        where = (
            {"target_nodes": RedisCluster.PRIMARIES}
            if isinstance(self.client, RedisCluster)
            else {}
        )
        try:
            with self.store.redis_errors():
                raw = self.client.info("memory", **where)
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, ResponseError):
                raise
            return MemoryReport(used_memory=None, nodes={}, error=str(exc.__cause__))
        # RedisCluster answers {node name: info}; a single server answers the info itself.
        per_node = (
            raw if raw and all(isinstance(v, Mapping) for v in raw.values()) else {"default": raw}
        )
        nodes = {
            name: {field: info[field] for field in _MEMORY_FIELDS if field in info}
            for name, info in per_node.items()
        }
        used = sum(int(info.get("used_memory", 0)) for info in nodes.values())
        return MemoryReport(used_memory=used, nodes=nodes)

    def rated_answers(
        self, rating: str | None = None, progress: Progress | None = None
    ) -> Iterator[RatedAnswer]:
        """Every rated answer (only those rated ``rating`` if given), session by session in
        SCAN order and by message id within one; read-only (no TTL refresh)."""
        seen = 0
        with self.store.redis_errors():
            for key in self.client.scan_iter(match=FEEDBACK_PATTERN, count=SCAN_COUNT):
                session_id = session_id_of_feedback(key)
                if session_id is None:
                    continue
                found = self._rated(keys=session_keys(session_id))
                seen += 1
                if progress and seen % SCAN_COUNT == 0:
                    progress(seen)
                if not found:  # expired or deleted since the SCAN saw it
                    continue
                rows = [found[i : i + 4] for i in range(0, len(found), 4)]
                for position, raw, answer, question in sorted(rows, key=lambda r: int(r[0])):
                    record = _rated_answer(session_id, int(position), raw, answer, question)
                    if rating is None or record["rating"] == rating:
                        yield record

    def purge(self, progress: Progress | None = None) -> int:
        """UNLINK every ``chat_session:`` key (and no other), in SCAN batches; never FLUSHDB."""
        deleted = 0
        with self.store.redis_errors():
            for batch in _chunks(self.client.scan_iter(match=ALL_PATTERN, count=SCAN_COUNT),
                                 SCAN_COUNT):  # fmt: skip
                # Belt and braces: the glob already guarantees the prefix.
                keys = [key for key in batch if key.startswith(KEY_PREFIX)]
                if keys:
                    deleted += int(self.client.unlink(*keys))
                if progress:
                    progress(deleted)
        return deleted

    # -- one session -------------------------------------------------------------------

    def export(self, session_id: str) -> SessionDocument | None:
        """The whole session as a JSON-ready document (no TTL refresh), or None if missing."""
        keys = session_keys(session_id)
        with self.store.redis_errors():
            result = self._snapshot(keys=keys)
        if result is None:
            return None
        created_at, last_activity, seq, pttl, *raw = result
        seq = int(seq) if seq is not None else len(raw)
        first = seq - len(raw)
        return {
            "format": SESSION_DOCUMENT_FORMAT,
            "sessionId": parse_session_id(session_id),
            "createdAt": iso_from_ms(created_at),
            "lastActivity": iso_from_ms(last_activity or created_at),
            "seq": seq,
            "ttlMs": int(pttl) if int(pttl) >= 0 else None,
            "messages": [decode_message(item, first + i) for i, item in enumerate(raw)],
        }

    def restore(self, document: Mapping[str, Any], *, replace: bool = False) -> bool:
        """Write an exported document back; False (nothing written) if the session exists
        and ``replace`` is off. ``document`` must have passed ``SessionDocumentSchema``."""
        keys = session_keys(document["sessionId"])
        raw = [encode_message(message_from_wire(m)) for m in document["messages"]]
        ttl_ms = document.get("ttlMs", self.store.ttl * 1000)
        args = [
            int(replace),
            -1 if ttl_ms is None else int(ttl_ms),
            ms_from_iso(document["createdAt"]),
            ms_from_iso(document["lastActivity"]),
            document.get("seq", len(raw)),
            *raw,
        ]
        with self.store.redis_errors():
            return bool(self._restore(keys=keys, args=args))

    def set_ttl(self, session_ids: Sequence[str], seconds: int | None) -> list[str]:
        """Set the TTL of every key of each session (None = PERSIST); return the ids that
        did not exist. ``seconds`` defaults nowhere: pass ``store.ttl`` to warm."""
        ttl_ms = -1 if seconds is None else int(seconds) * 1000
        missing = []
        for session_id in session_ids:
            try:
                keys = session_keys(session_id)
            except SessionNotFound:
                missing.append(session_id)
                continue
            with self.store.redis_errors():
                if not self._set_ttl(keys=keys, args=[ttl_ms]):
                    missing.append(session_id)
        return missing


def _rated_answer(
    session_id: str, position: int, raw: str, answer: str | None, question: str | None
) -> RatedAnswer:
    feedback, at_ms = decode_feedback(raw)
    shown = decode_message(answer, position) if answer else None
    asked = decode_message(question, position - 1) if question else None
    return {
        "sessionId": session_id,
        "messageId": position,
        "rating": feedback["rating"],
        "comment": feedback["comment"],
        "question": asked["content"] if asked and asked["type"] == "user" else None,
        "answer": shown["content"] if shown else None,
        "sources": shown.get("sources", []) if shown else [],
        "degraded": bool(shown and shown.get("degraded")),
        "at": iso_from_ms(at_ms),
    }
