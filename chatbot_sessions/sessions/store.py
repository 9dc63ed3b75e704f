"""The session repository: every Redis command a request sends about a session.

The key layout and TTL rule are in ``keys.py``, the Lua in ``scripts.py``, the value
encoding in ``codec.py``; this class runs them. Each public method is one round trip: one
script that does the access, re-arms the session's TTLs and sets ``lastActivity``
atomically. The append script refuses to recreate a session that expired or was deleted,
and trims to the maximum in the same step, so concurrent writers can neither lose nor
reorder messages. (One exception: on Redis Cluster, deleting a session whose first send was
keyed takes a second command for the session-less record, which lives under another hash
tag.)

**Every write is safe to run twice.** A connection can break after Redis ran a script but
before its reply arrived; the store then runs the script again (``_call``). Each create,
append and rating therefore carries a fresh *write id* that its script logs in the session's
write log in the same step, and a run that finds its own id answers what the first run
answered and changes nothing. A claim knows its own owner token, release and finish set
the same fields again, and a delete that finds nothing after a retry is its own earlier
success. An Idempotency-Key is the same idea with an id the client chose, kept across
requests; its flow is ``idempotency.py``.

This module knows Redis and nothing of HTTP.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from chatbot_sessions import signals
from chatbot_sessions.domain import (
    RATINGS,
    Feedback,
    LimitCounter,
    Message,
    NewMessage,
    SessionPage,
)
from chatbot_sessions.exceptions import (
    AlreadyRecorded,
    MessageNotFound,
    NotAnAnswer,
    RateLimited,
    SessionIdTaken,
    SessionNotFound,
    StoreUnavailable,
)
from chatbot_sessions.sessions import budget, scripts
from chatbot_sessions.sessions.codec import (
    ANSWER_CODES,
    decode_feedback,
    decode_message,
    encode_feedback,
    encode_message,
    is_degraded,
)
from chatbot_sessions.sessions.ids import parse_message_id
from chatbot_sessions.sessions.keys import (
    SESSIONLESS_RECORD_PREFIX,
    WRITE_ID_WINDOW,
    canonical_session_id,
    idempotency_key,
    meta_key,
    record_ttl,
    reply_events_key,
    session_keys,
    writes_key,
)
from chatbot_sessions.sessions.lua import LuaScript
from chatbot_sessions.timestamps import iso_from_ms, now_ms

#: Retries of a script after a connection error, and the pause before each (seconds). A
#: refused or reset connection fails at once, so this rides out a dropped idle connection
#: or a Redis restart in progress within a fraction of a second. Timeouts are not retried:
#: the request has spent its one wait (``sessions/budget.py``).
RETRY_DELAYS = (0.04, 0.08)


class Outcome(StrEnum):
    """What a create or append script answered (see the scripts above)."""

    CREATED = "created"
    STORED = "stored"
    GONE = "gone"
    TAKEN = "taken"
    RECORDED = "recorded"


class Rated(StrEnum):
    """What a rating script answered (see ``scripts.RATE``)."""

    RATED = "rated"
    GONE = "gone"
    MISSING = "missing"
    QUESTION = "question"


class Published(StrEnum):
    """What publishing a reply event found (see ``scripts.PUBLISH``)."""

    OK = "ok"
    STOP = "stop"  # the user asked to stop this reply
    GONE = "gone"  # the session no longer exists: nothing written


class StopOutcome(StrEnum):
    """What asking a reply to stop found (see ``scripts.STOP``)."""

    OK = "ok"
    DONE = "done"  # it had already ended
    GONE = "gone"  # no such session or reply


@dataclass(frozen=True)
class ReplyEvent:
    """One event of a streamed reply: its number in the reply, its name, its JSON data."""

    id: int
    name: str
    data: str


#: Events after which a streamed reply has nothing more to say.
FINAL_EVENTS = ("done", "error")
#: Most events one reply's stream keeps (a reply of LLM_MAX_TOKENS is far below this).
STREAM_MAXLEN = 10_000


class ClaimStatus(StrEnum):
    """What claiming an Idempotency-Key record found (see ``_CLAIM``)."""

    NEW = "new"
    BUSY = "busy"
    DONE = "done"
    MISMATCH = "mismatch"
    GONE = "gone"


@dataclass(frozen=True)
class StoredContext:
    """A session's rolling summary (of every message before ``summary_through``) and the
    messages read after it, oldest first, each with its absolute ``id``."""

    summary: str
    summary_through: int
    first: int  # the oldest position still stored (older ones were trimmed)
    start: int  # the position of messages[0]
    messages: list[Message]


@dataclass(frozen=True)
class IdempotencyClaim:
    """What claiming an Idempotency-Key found; ``NEW`` means the caller now holds the lease."""

    status: ClaimStatus
    session_id: str | None
    result: str | None = None
    #: With DONE: the stored answer's message id (None in a record written before records
    #: kept it).
    message_id: int | None = None
    lease_until_ms: int = 0
    #: With BUSY: the reply the holder is streaming ('' when it is not streaming).
    reply_id: str = ""


@dataclass(frozen=True)
class IdempotentWrite:
    """The record an append marks done in the same script: key, request fingerprint, result."""

    key: str
    fingerprint: str
    result: str


def _reply_keys(session_id: str, reply_id: str) -> list[str]:
    """The session's keys and, last, its reply's event stream: the streaming scripts' KEYS."""
    return [*session_keys(session_id), reply_events_key(session_id, reply_id)]


def _write_mark() -> str:
    """A fresh write id as it appears in the write log: 96 random bits, hex."""
    return "w:" + secrets.token_hex(12)


class SessionStore:
    """Thread-safe repository of chat sessions over one shared redis-py client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl: int,
        max_messages: int,
        idempotency_ttl: int = 600,
        single_node: bool | None = None,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.max_messages = max_messages
        # A record never outlives its session (see the module docstring).
        self.record_ttl = record_ttl(ttl, idempotency_ttl)
        # A script may touch another hash tag's key on a single server, never on a cluster.
        self.single_node = (
            not isinstance(client, RedisCluster) if single_node is None else single_node
        )
        # The rate-limit counters the current request still owes (none by default). The
        # limiter (security/rate_limits.py) sets this on a single node, and the request's
        # first create, touch or context counts them in its own script (``_access``).
        self.owed_limits: Callable[[], Sequence[LimitCounter]] = tuple
        self._touch = LuaScript(client, scripts.TOUCH)
        self._create = LuaScript(client, scripts.CREATE)
        self._read = LuaScript(client, scripts.READ)
        self._append = LuaScript(client, scripts.APPEND)
        self._rate = LuaScript(client, scripts.RATE)
        self._claim = LuaScript(client, scripts.CLAIM)
        self._release = LuaScript(client, scripts.RELEASE)
        self._finish = LuaScript(client, scripts.FINISH)
        self._delete = LuaScript(client, scripts.DELETE)
        self._publish = LuaScript(client, scripts.PUBLISH)
        self._context = LuaScript(client, scripts.CONTEXT)
        self._summary = LuaScript(client, scripts.SUMMARY)
        self._stop = LuaScript(client, scripts.STOP)
        self._reply_exists = LuaScript(client, scripts.REPLY_EXISTS)

    @contextmanager
    def redis_errors(self) -> Iterator[None]:
        """Turn redis-py failures inside the block into StoreUnavailable (and a store_error
        signal), for the store and for tools that send commands over its client."""
        try:
            yield
        # RedisClusterException is not a RedisError: it is what a cluster client raises
        # when no node answers while it refreshes its slot map.
        except (RedisError, RedisClusterException) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        """What a failed Redis call becomes: noted against the request's wait budget,
        signalled (metrics count it), and a StoreUnavailable for the caller to raise."""
        budget.note_failure(exc)
        signals.store_error.send(self, error=exc)
        return StoreUnavailable(f"{type(exc).__name__}: {exc}")

    def _call(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[Any, bool]:
        """Run one script, again after a connection error; return (result, retried).

        Every script is safe to run twice (reads are reads; writes log their write id), so
        a retry after a reply was lost changes nothing. ``retried`` lets a caller read "not
        found" after a retry as "an earlier attempt of mine did it".
        """
        return self._run(lambda: script(keys=keys, args=args))

    def _run(self, call: Callable[[], Any]) -> tuple[Any, bool]:
        """``_call`` for any one round trip (a script, a pipeline)."""
        if budget.spent():
            raise StoreUnavailable("an earlier Redis call of this request timed out")
        # The body of ``redis_errors``, written out: this runs on every store access, and
        # a generator-based context manager costs more than the try statement it wraps.
        try:
            for attempt, pause in enumerate((*RETRY_DELAYS, None)):
                started = time.monotonic()
                try:
                    return call(), attempt > 0
                except RedisConnectionError as exc:
                    if budget.note_failure(exc, time.monotonic() - started) or pause is None:
                        raise  # it was a wait, or no tries are left
                    time.sleep(pause)
        except (RedisError, RedisClusterException) as exc:
            raise self._unavailable(exc) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _session_call(self, script: LuaScript, session_id: str, *args: Any) -> Any:
        return self._call(script, session_keys(session_id), [self.ttl, *args])[0]

    def _access(self, script: LuaScript, session_id: str, *args: Any) -> Any:
        """A session access that also counts the request's rate limits (``owed_limits``),
        in the same script: RateLimited, with the session untouched, if one is used up.

        Only create, touch and context take limits: they are the first access of the
        requests that are limited (create, send-message). Only the first attempt carries
        them: a run again after a lost reply must not count the request twice, nor refuse
        a create the first run made (a refused connection may leave the request uncounted,
        the side limits fail to).
        """
        limits = self.owed_limits()
        if not limits:  # most accesses: a plain run, retries and all
            return self._session_call(script, session_id, *args, 0)
        keys = session_keys(session_id)
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            counted = limits if attempts == 1 else ()
            tail = [n for limit in counted for n in (limit.window, limit.amount)]
            return script(
                keys=[*keys, *(limit.key for limit in counted)],
                args=[self.ttl, *args, *tail, len(counted)],
            )

        result = self._run(attempt)[0]
        if isinstance(result, list) and result and isinstance(result[0], list):
            retry_after, counter = result[0]  # the scripts' one nested answer: refused
            raise RateLimited(int(retry_after), limits[int(counter) - 1].rate)
        return result

    def create(self, session_id: str) -> None:
        """Create an empty session under a fresh id (see ``session_ids.new_session_id``);
        SessionIdTaken if another session has it."""
        mark = _write_mark()
        at = now_ms()
        outcome = self._access(self._create, session_id, at, mark, self._forget_at(at))
        if outcome == Outcome.TAKEN:
            raise SessionIdTaken(session_id)
        signals.session_created.send(self)

    def touch(self, session_id: str) -> bool:
        """Refresh the TTL and lastActivity; return whether the session exists."""
        try:
            return bool(self._access(self._touch, session_id, now_ms()))
        except SessionNotFound:
            return False

    def read(self, session_id: str, *, limit: int = 0, before: int | None = None) -> SessionPage:
        """Return the newest ``limit`` messages (all if 0) before absolute position ``before``.

        Raises SessionNotFound for a missing session; the access refreshes its TTL. The page
        carries the canonical id, whatever case the caller spelled it in.
        """
        at = now_ms()
        result = self._session_call(
            self._read, session_id, at, limit, -1 if before is None else before
        )
        if result is None:
            raise SessionNotFound(session_id)
        created_at, first, start, rated, *raw = result
        start = int(start)
        pairs = zip(rated[::2], rated[1::2], strict=True)
        ratings = {int(n): decode_feedback(value)[0] for n, value in pairs}
        return SessionPage(
            session_id=canonical_session_id(session_id),
            created_at=iso_from_ms(created_at),
            last_activity=iso_from_ms(at),
            messages=[
                decode_message(item, start + i, ratings.get(start + i))
                for i, item in enumerate(raw)
            ],
            next_cursor=start if start > int(first) else None,
        )

    def append(
        self,
        session_id: str,
        messages: Sequence[NewMessage],
        *,
        create: bool = False,
        record: IdempotentWrite | None = None,
        started_by_key: bool = False,
    ) -> int | None:
        """Append ``messages`` atomically and exactly once, trimming to the maximum; return
        the last one's message id (a turn's answer), also when run again after a lost reply;
        None only when that first run was logged by a release that did not keep the id.

        Without ``create`` a vanished session raises SessionNotFound instead of coming back;
        with it, the session must not exist yet (SessionIdTaken) and is created with these
        messages. With a ``record``, the session's Idempotency-Key record is marked done in
        the same step, and AlreadyRecorded is raised (nothing stored) if another attempt of
        the key did so already. The record joins the session's write log, and so, with
        ``create`` or ``started_by_key``, does the key's session-less record (the one that
        reserved this id), so that deleting the session deletes both.
        """
        keys = [*session_keys(session_id)]
        at = now_ms()
        record_args: list[Any] = ["", "", "", "", ""]
        if record is not None:
            keys.append(idempotency_key(record.key, session_id))
            origin = idempotency_key(record.key, None) if create or started_by_key else ""
            record_args = [
                self.record_ttl, record.fingerprint, canonical_session_id(session_id),
                record.result, origin,
            ]  # fmt: skip
        encoded = [encode_message(m) for m in messages]
        args = [
            self.ttl, at, self.max_messages, int(create), _write_mark(), self._forget_at(at),
            *record_args, *encoded,
        ]  # fmt: skip
        (outcome, *appended_at), _ = self._call(self._append, keys, args)
        if outcome == Outcome.GONE:
            raise SessionNotFound(session_id)
        if outcome == Outcome.TAKEN:
            raise SessionIdTaken(session_id)
        if outcome == Outcome.RECORDED:
            raise AlreadyRecorded(session_id)
        if create:
            signals.session_created.send(self)
        signals.messages_stored.send(self, count=len(encoded))
        return int(appended_at[0]) if appended_at else None

    def rate(
        self, session_id: str, message_id: str | int, rating: str, comment: str | None = None
    ) -> Feedback:
        """Store ``rating`` (and ``comment``) on the answer ``message_id``, exactly once,
        replacing any earlier rating of it; an access of the session.

        SessionNotFound for a missing session, MessageNotFound for an id that is malformed or
        names no stored message (beyond the newest, trimmed away), NotAnAnswer for a user
        message; nothing is stored then.
        """
        if rating not in RATINGS:  # the schema checks it; the metrics label must stay bounded
            raise ValueError(f"rating must be one of {RATINGS}, not {rating!r}")
        keys = session_keys(session_id)
        position = parse_message_id(message_id)
        if position is None:
            raise MessageNotFound(session_id, message_id)
        at = now_ms()
        args = [
            self.ttl, at, _write_mark(), self._forget_at(at), position,
            encode_feedback(rating, comment, at), ANSWER_CODES,
        ]  # fmt: skip
        (status, head), _ = self._call(self._rate, keys, args)
        if status == Rated.GONE:
            raise SessionNotFound(session_id)
        if status == Rated.MISSING:
            raise MessageNotFound(session_id, position)
        if status == Rated.QUESTION:
            raise NotAnAnswer(session_id, position)
        signals.feedback_given.send(self, rating=rating, degraded=is_degraded(head))
        canonical = canonical_session_id(session_id)
        return Feedback(canonical, position, rating, comment)  # type: ignore[arg-type]

    def claim(
        self,
        key: str,
        fingerprint: str,
        *,
        session_id: str | None,
        proposed_session_id: str | None = None,
        lease_ms: int,
        owner: str,
        reply_id: str = "",
    ) -> IdempotencyClaim:
        """Find or start the record of Idempotency-Key ``key`` for ``session_id`` (None: the
        session-less record, which reserves ``proposed_session_id`` for the new session).
        In a session that no longer exists the status is ``GONE`` and nothing is written.
        ``owner`` is this attempt's write id: its own claim, run twice, is ``NEW`` both times.
        """
        at = now_ms()
        # Records hold canonical ids, so a replay answers with the id the first reply gave.
        sid = canonical_session_id(session_id) if session_id else proposed_session_id or ""
        args = [self.record_ttl, at, fingerprint, at + lease_ms, owner, sid, reply_id]
        keys = [idempotency_key(key, session_id)]
        if session_id is not None:
            keys += [writes_key(session_id), meta_key(session_id)]
        (status, found_sid, *extra), _ = self._call(self._claim, keys, args)
        status = ClaimStatus(status)
        if status == ClaimStatus.DONE:
            message_id = int(extra[1]) if extra[1] != "" else None
            return IdempotencyClaim(
                status, found_sid or None, result=extra[0], message_id=message_id
            )
        if status == ClaimStatus.BUSY:
            return IdempotencyClaim(
                status, found_sid or None, lease_until_ms=int(extra[0]), reply_id=extra[1]
            )
        return IdempotencyClaim(status, found_sid or None)

    def release(self, key: str, *, session_id: str | None, owner: str) -> None:
        """End ``owner``'s lease on the record now, so a retry need not wait for it to lapse."""
        self._call(self._release, [idempotency_key(key, session_id)], [owner])

    def finish(
        self,
        key: str,
        record: IdempotentWrite,
        *,
        session_id: str,
        message_id: int | None = None,
    ) -> None:
        """Mark the session-less record of ``key`` done: its exchange is in ``session_id``,
        its answer at ``message_id`` (None: unknown)."""
        mid = "" if message_id is None else message_id
        args = [record.fingerprint, canonical_session_id(session_id), record.result, mid]
        self._call(self._finish, [idempotency_key(key, None)], args)

    def delete(self, session_id: str) -> None:
        """Delete every key of the session, its Idempotency-Key records included, in one
        script; SessionNotFound if there was nothing to delete.

        A delete leaves nothing behind, so a run that finds nothing after a retry is taken
        as the earlier attempt's success (its reply was lost), not as a missing session.
        On Redis Cluster the session-less record that started the session (another hash
        tag) is deleted by a second command right after the script.
        """
        keys = session_keys(session_id)
        (removed, *elsewhere), retried = self._call(
            self._delete, keys, [int(self.single_node), SESSIONLESS_RECORD_PREFIX]
        )
        if elsewhere:
            with self.redis_errors():
                removed += self.client.delete(*elsewhere)
        if not removed and not retried:
            raise SessionNotFound(session_id)

    # -- what replies are built from --------------------------------------------------

    def context(self, session_id: str, *, cap: int, start: int | None = None) -> StoredContext:
        """The rolling summary and the messages after it: the newest ``cap`` (an access, as
        for a reply), or up to ``cap`` from absolute position ``start`` (the summariser's
        backlog). SessionNotFound if the session is gone."""
        args = [now_ms(), cap, -1 if start is None else start]
        result = self._access(self._context, session_id, *args)
        if result is None:
            raise SessionNotFound(session_id)
        summary, through, first, begin, *raw = result
        messages = [decode_message(item, int(begin) + n) for n, item in enumerate(raw)]
        return StoredContext(summary, int(through), int(first), int(begin), messages)

    def save_summary(self, session_id: str, summary: str, through: int) -> bool:
        """Store ``summary`` of every message before position ``through``, if that is further
        than the stored one (never backwards). True if it was written."""
        with_keys = [meta_key(session_id)]
        return bool(self._call(self._summary, with_keys, [summary, through])[0])

    # -- streamed replies ---------------------------------------------------------------

    def publish(
        self, session_id: str, reply_id: str, event: ReplyEvent, *, retention: int
    ) -> Published:
        """Append ``event`` to the reply's stream, kept ``retention`` seconds after its last
        event (never longer than the session); says whether the user asked to stop."""
        keys = _reply_keys(session_id, reply_id)
        args = [
            self.ttl, now_ms(), event.id, event.name, event.data, min(retention, self.ttl),
            STREAM_MAXLEN, int(event.name in FINAL_EVENTS),
        ]  # fmt: skip
        return Published(self._call(self._publish, keys, args)[0])

    def stop_reply(self, session_id: str, reply_id: str) -> StopOutcome:
        """Ask the producer of a streamed reply to stop (an access of the session)."""
        keys = _reply_keys(session_id, reply_id)
        return StopOutcome(self._call(self._stop, keys, [self.ttl, now_ms(), *FINAL_EVENTS])[0])

    def last_reply_event(self, session_id: str, reply_id: str) -> ReplyEvent | None:
        """The reply's latest event (id and name, no data), or None when its events are not
        kept; SessionNotFound if the session is gone. An access of the session."""
        keys = _reply_keys(session_id, reply_id)
        found = self._call(self._reply_exists, keys, [self.ttl, now_ms()])[0]
        if found is None:
            raise SessionNotFound(session_id)
        if not found[0]:
            return None
        return ReplyEvent(int(found[1]), found[2], "")

    def read_events(
        self, session_id: str, reply_id: str, *, after: int, block_ms: int
    ) -> list[ReplyEvent]:
        """Events after number ``after``, waiting up to ``block_ms`` for one (XREAD BLOCK).

        The same round trip refreshes the session's TTL (reading a stream is an access; two
        calls on a cluster, whose client runs no script in a pipeline); SessionNotFound if
        the session is gone.
        """
        keys = session_keys(session_id)
        stream = reply_events_key(session_id, reply_id)

        def poll() -> list[Any]:
            # TOUCH's last argument: the number of rate-limit counters (a read counts none).
            if not self.single_node:
                # A cluster client refuses scripts in a pipeline: two calls, same node.
                touched = self._touch(keys=keys, args=[self.ttl, now_ms(), 0])
                if not touched:
                    return [touched, []]
                return [
                    touched,
                    self.client.xread({stream: f"0-{after}"}, count=100, block=block_ms),
                ]
            pipe = self.client.pipeline(transaction=False)
            self._touch(keys=keys, args=[self.ttl, now_ms(), 0], client=pipe)
            pipe.xread({stream: f"0-{after}"}, count=100, block=block_ms)
            return pipe.execute()

        touched, found = self._run(poll)[0]
        if not touched:
            raise SessionNotFound(session_id)
        entries = found[0][1] if found else []
        return [
            ReplyEvent(int(entry_id.partition("-")[2]), fields["e"], fields["d"])
            for entry_id, fields in entries
        ]

    def ping(self) -> bool:
        """True when Redis answers PING; StoreUnavailable otherwise."""
        with self.redis_errors():
            return bool(self.client.ping())

    @staticmethod
    def _forget_at(at_ms: int) -> int:
        return at_ms + WRITE_ID_WINDOW * 1000
