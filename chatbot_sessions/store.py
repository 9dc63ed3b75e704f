"""The session repository: every Redis key, command and TTL rule of a chat session.

Layout (one Redis Cluster hash tag per session, so multi-key scripts never hit CROSSSLOT):

    chat_session:{<id>}           hash  createdAt, lastActivity (epoch ms), seq (ever appended)
    chat_session:{<id>}:messages  list  one compact entry per message, oldest first
    chat_session:{<id>}:writes    zset  the session's write log (below)
    chat_session:{<id>}:idem:<h>  hash  Idempotency-Key record of a send into that session
    chat_session:idem:{<h>}       hash  Idempotency-Key record of a send without a session

**Every write is safe to run twice.** A connection can break after Redis ran a script but
before its reply arrived; the store then runs the script again (``_call``), and so would any
retry. Each write therefore carries a *write id* that the script records in the write log in
the same atomic step, and a script that finds its own id answers what the first run answered
and changes nothing. The log holds:

- ``w:<write id>`` for every create and append, scored by when it may be forgotten
  (``WRITE_ID_WINDOW``: longer than any request lives, since only the request that made an
  id ever resends it);
- the names of the session's Idempotency-Key records (and of the session-less record that
  reserved its id), scored by their expiry, so DELETE finds them without SCAN.

Each write prunes what is past its score, so the log stays a handful of entries. An
Idempotency-Key is the same idea with an id the client chose, kept for ``IDEMPOTENCY_TTL``
across requests; its Python side is ``idempotency.py``. ``<h>`` is the SHA-256 of the key,
so no client string reaches a key name.

**TTL rule.** Every access re-arms the TTL of meta, messages and the write log to
SESSION_TTL and sets ``lastActivity``. A record lives min(IDEMPOTENCY_TTL, SESSION_TTL)
from its creation and no access extends it, so a record never outlives its session.

Each public method is one round trip: one Lua script (the store retries it on a connection
error, which its write id makes harmless). The append script refuses to recreate a session
that expired or was deleted, and trims to the maximum in the same step, so concurrent
writers can neither lose nor reorder messages. (One exception: on Redis Cluster, deleting a
session whose first send was keyed takes a second command for the session-less record,
which lives under another hash tag.) This module knows Redis and nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatbot_sessions import redis_budget, signals
from chatbot_sessions.exceptions import (
    AlreadyRecorded,
    SessionIdTaken,
    SessionNotFound,
    StoreUnavailable,
)
from chatbot_sessions.replies.base import Message, Source
from chatbot_sessions.session_ids import parse_session_id
from chatbot_sessions.timestamps import iso_from_ms, now_ms

KEY_PREFIX = "chat_session:"
#: Names of the session-less Idempotency-Key records start with this (then ``{<h>}``).
SESSIONLESS_RECORD_PREFIX = f"{KEY_PREFIX}idem:{{"
#: Seconds a write id stays in the log: past gunicorn's worker timeout (60 s), after which
#: no request that could resend the id is still alive.
WRITE_ID_WINDOW = 120
#: Retries of a script after a connection error, and the pause before each (seconds). A
#: refused or reset connection fails at once, so this rides out a dropped idle connection
#: or a Redis restart in progress within a fraction of a second. Timeouts are not retried:
#: the request has spent its one wait (``redis_budget``).
RETRY_DELAYS = (0.04, 0.08)
_TYPE_CODES = {"user": "u", "assistant": "a"}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}


# Every reading script opens with the access rule: stop with `if_missing` when the session
# is gone, else re-arm the TTL of all three keys and set lastActivity.
# KEYS: meta, messages, writes. ARGV[1]: ttl, ARGV[2]: now_ms.
def _refresh(if_missing: str) -> str:
    return f"""
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then return {if_missing} end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
"""


# Every writing script logs its write id the same way (and forgets what is past its window).
# KEYS[3]: writes. ARGV[1]: ttl, ARGV[2]: now_ms. Arguments: the mark and its expiry (ms).
_LOG_WRITE = """
local function log_write(mark, forget_at)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
  redis.call('ZADD', KEYS[3], forget_at, mark)
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
"""

# KEYS: meta, messages, writes. ARGV: ttl, now_ms.
# Returns 1 if the session exists (and was touched), else 0.
_TOUCH = _refresh("0") + "return 1\n"

# KEYS: meta, messages, writes. ARGV: ttl, now_ms, write mark, mark expiry (ms).
# Returns 'created', also when replayed (the id exists and the log has this write's mark),
# or 'taken' when the id is another session's.
_CREATE = (
    _LOG_WRITE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('ZSCORE', KEYS[3], ARGV[3]) then return 'created' end
  return 'taken'
end
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'lastActivity', ARGV[2], 'seq', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
log_write(ARGV[3], ARGV[4])
return 'created'
"""
)

# KEYS: meta, messages, writes. ARGV: ttl, now_ms, limit (0 = all), before (-1 = newest).
# Returns nil if missing, else {createdAt, first_abs, start_abs, messages...} where
# message positions are absolute (counted since the session began) so cursors survive trims.
_READ = (
    _refresh("false")
    + """
local meta = redis.call('HMGET', KEYS[1], 'createdAt', 'seq')
local len = redis.call('LLEN', KEYS[2])
local seq = tonumber(meta[2]) or len
local first = seq - len
local stop = seq
local before = tonumber(ARGV[4])
if before >= 0 and before < stop then stop = before end
local start = first
local limit = tonumber(ARGV[3])
if limit > 0 and stop - limit > start then start = stop - limit end
local result = {meta[1], first, start}
if stop > start then
  local items = redis.call('LRANGE', KEYS[2], start - first, stop - 1 - first)
  for i = 1, #items do result[#result + 1] = items[i] end
end
return result
"""
)

# KEYS: meta, messages, writes[, record]. ARGV: ttl, now_ms, max_messages, create ('1' =
# new session), write mark, mark expiry (ms); then, used only with a record: record ttl,
# fingerprint, session id, result, origin (name of the session-less record that reserved a
# new session, or ''); messages from ARGV[12].
# Returns:
#   'stored'   appended now, or earlier by this very write (its mark is in the log);
#   'gone'     the session no longer exists (never resurrected);
#   'taken'    create hit an id that already exists;
#   'recorded' the record is done: another attempt of the key stored the exchange.
# Marking the record done in the same script means no crash can store without recording or
# vice versa; logging it (and the origin) here means DELETE finds both.
_APPEND = (
    _LOG_WRITE
    + """
if redis.call('ZSCORE', KEYS[3], ARGV[5]) then return 'stored' end
local record = KEYS[4]
if record and redis.call('HGET', record, 'state') == 'done' then return 'recorded' end
local exists = redis.call('EXISTS', KEYS[1])
if ARGV[4] == '1' then
  if exists == 1 then return 'taken' end
  redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'seq', 0)
elseif exists == 0 then
  return 'gone'
end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 12))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('HINCRBY', KEYS[1], 'seq', #ARGV - 11)
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
log_write(ARGV[5], ARGV[6])
if record then
  redis.call('HSET', record, 'state', 'done', 'fp', ARGV[8], 'sid', ARGV[9], 'result', ARGV[10])
  redis.call('HDEL', record, 'lease', 'owner')
  redis.call('EXPIRE', record, ARGV[7])
  local until_ms = tonumber(ARGV[2]) + 1000 * tonumber(ARGV[7])
  redis.call('ZADD', KEYS[3], until_ms, record)
  if ARGV[11] ~= '' then redis.call('ZADD', KEYS[3], until_ms, ARGV[11]) end
end
return 'stored'
"""
)

# KEYS: record[, writes, meta] (the last two for a record in a session). ARGV: record ttl,
# now_ms, fingerprint, lease_until_ms, owner, proposed session id.
# Returns {status, sid[, result or lease_until]}: 'new' (this caller holds the lease: a new
# record, a lapsed lease taken over, or its own claim run again), 'busy' (another holds it),
# 'done', 'mismatch', or 'gone' when the session no longer exists (nothing written: no
# record of a deleted session). A new record in a session joins its write log, which
# expires with the session (PTTL of meta).
_CLAIM = """
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then return {'gone', ''} end
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease', 'sid', 'result', 'owner')
if not r[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[3], 'lease', ARGV[4],
             'owner', ARGV[5], 'sid', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  if KEYS[2] then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + 1000 * tonumber(ARGV[1]), KEYS[1])
    local pttl = redis.call('PTTL', KEYS[3])
    if pttl > 0 then redis.call('PEXPIRE', KEYS[2], pttl) end
  end
  return {'new', ARGV[6]}
end
if r[2] ~= ARGV[3] then return {'mismatch', r[4]} end
if r[1] == 'done' then return {'done', r[4], r[5]} end
if r[6] == ARGV[5] then return {'new', r[4]} end
if tonumber(r[3]) > tonumber(ARGV[2]) then return {'busy', r[4], r[3]} end
redis.call('HSET', KEYS[1], 'lease', ARGV[4], 'owner', ARGV[5])
return {'new', r[4]}
"""

# KEYS: record. ARGV: owner. Ends the owner's lease early (a failed attempt) but keeps the
# record and its session id: the attempt may still have stored, and a retry must find out.
# Run twice, the second run finds no owner and does nothing.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'state') == 'pending'
   and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'lease', 0)
  redis.call('HDEL', KEYS[1], 'owner')
end
return 1
"""

# KEYS: record. ARGV: fingerprint, session id, result. Copies a stored exchange's result
# onto a session-less record, so its retries find the reply without a second lookup. Only
# onto a record that still exists: if the new session was deleted meanwhile, its DELETE
# removed the record (the append logged it), and it must not come back. The record keeps
# the TTL of its claim. Run twice, it writes the same fields again.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'fp', ARGV[1], 'sid', ARGV[2], 'result', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease', 'owner')
return 1
"""

# KEYS: meta, messages, writes. ARGV: '1' if the script may delete keys of other hash tags
# (a single server; never on a cluster), the session-less record prefix. Deletes the
# session, each record its write log names, and the log, atomically. Records of this
# session share its slot; a session-less record does not, so on a cluster its name is
# returned for the caller to delete. Returns {keys deleted (log not counted), names...}.
# Nothing is left behind, not even a tombstone, so a second run finds nothing: the caller
# tells a replay from a missing session by whether it retried (``SessionStore.delete``).
_DELETE = """
local removed = redis.call('DEL', KEYS[1], KEYS[2])
local own = KEYS[1] .. ':idem:'
local other = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if string.sub(name, 1, #own) == own then
    removed = removed + redis.call('DEL', name)
  elseif string.sub(name, 1, #ARGV[2]) == ARGV[2] then
    if ARGV[1] == '1' then
      removed = removed + redis.call('DEL', name)
    else
      other[#other + 1] = name
    end
  end
end
redis.call('DEL', KEYS[3])
return {removed, unpack(other)}
"""


class Outcome(StrEnum):
    """What a create or append script answered (see the scripts above)."""

    CREATED = "created"
    STORED = "stored"
    GONE = "gone"
    TAKEN = "taken"
    RECORDED = "recorded"


class ClaimStatus(StrEnum):
    """What claiming an Idempotency-Key record found (see ``_CLAIM``)."""

    NEW = "new"
    BUSY = "busy"
    DONE = "done"
    MISMATCH = "mismatch"
    GONE = "gone"


def canonical_session_id(session_id: str) -> str:
    """The id in the one form keys, records and answers use; a malformed id is not found."""
    canonical = parse_session_id(session_id)
    if canonical is None:
        raise SessionNotFound(session_id)
    return canonical


def session_keys(session_id: str) -> tuple[str, str]:
    """Return (meta key, messages key) for a canonical id; anything else is not found."""
    tag = f"{KEY_PREFIX}{{{canonical_session_id(session_id)}}}"
    return tag, f"{tag}:messages"


def all_session_keys(session_id: str) -> list[str]:
    """Meta, messages and write log: the keys whose TTL every access of the session refreshes."""
    meta, messages = session_keys(session_id)
    return [meta, messages, f"{meta}:writes"]


def writes_key(session_id: str) -> str:
    """The session's write log: recent write ids and the names of its idempotency records."""
    return all_session_keys(session_id)[2]


def idempotency_key(client_key: str, session_id: str | None) -> str:
    """The record key of an Idempotency-Key: in the session's hash tag, or its own if none."""
    digest = hashlib.sha256(client_key.encode("utf-8")).hexdigest()
    if session_id is None:
        return f"{SESSIONLESS_RECORD_PREFIX}{digest}}}"
    return f"{session_keys(session_id)[0]}:idem:{digest}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


@dataclass(frozen=True)
class NewMessage:
    """A message about to be appended; ``at_ms`` is when it was said."""

    type: str
    content: str
    at_ms: int
    sources: Sequence[Source] = ()

    def encode(self) -> str:
        """Compact entry: ``<t><ms base 36>|<content>``, about 10 bytes of overhead.

        ``t`` is ``u``/``a``, or ``U``/``A`` when a line of JSON sources sits between the
        ``|`` and the content (JSON never holds a raw newline, so the first one ends it).
        The seed's JSON object per message spent about 60 bytes on keys and an ISO date.
        """
        code = _TYPE_CODES[self.type]
        stamp = _base36(self.at_ms)
        if not self.sources:
            return f"{code}{stamp}|{self.content}"
        sources = json.dumps(
            [[s.title, s.source, round(s.score, 4)] for s in self.sources],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return f"{code.upper()}{stamp}|{sources}\n{self.content}"


def decode_message(raw: str) -> Message:
    """Turn a stored entry back into the wire shape ``{type, content, timestamp[, sources]}``."""
    head, _, rest = raw.partition("|")
    code = head[0]
    message: dict[str, Any] = {"type": _TYPE_NAMES[code.lower()]}
    if code.isupper():
        sources, _, rest = rest.partition("\n")
        message["content"] = rest
        message["timestamp"] = iso_from_ms(int(head[1:], 36))
        message["sources"] = [
            {"title": title, "source": source, "score": score}
            for title, source, score in json.loads(sources)
        ]
    else:
        message["content"] = rest
        message["timestamp"] = iso_from_ms(int(head[1:], 36))
    return message  # type: ignore[return-value]


@dataclass(frozen=True)
class SessionPage:
    """A session's metadata and one page of its messages, oldest first."""

    session_id: str
    created_at: str
    last_activity: str
    messages: list[Message] = field(default_factory=list)
    next_cursor: int | None = None


@dataclass(frozen=True)
class IdempotencyClaim:
    """What claiming an Idempotency-Key found; ``NEW`` means the caller now holds the lease."""

    status: ClaimStatus
    session_id: str | None
    result: str | None = None
    lease_until_ms: int = 0


@dataclass(frozen=True)
class IdempotentWrite:
    """The record an append marks done in the same script: key, request fingerprint, result."""

    key: str
    fingerprint: str
    result: str


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
        self.record_ttl = min(ttl, idempotency_ttl)
        # A script may touch another hash tag's key on a single server, never on a cluster.
        self.single_node = (
            not isinstance(client, RedisCluster) if single_node is None else single_node
        )
        self._touch = client.register_script(_TOUCH)
        self._create = client.register_script(_CREATE)
        self._read = client.register_script(_READ)
        self._append = client.register_script(_APPEND)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._finish = client.register_script(_FINISH)
        self._delete = client.register_script(_DELETE)

    @contextmanager
    def redis_errors(self) -> Iterator[None]:
        """Turn redis-py failures inside the block into StoreUnavailable (and a store_error
        signal), for the store and for tools that send commands over its client."""
        try:
            yield
        # RedisClusterException is not a RedisError: it is what a cluster client raises
        # when no node answers while it refreshes its slot map.
        except (RedisError, RedisClusterException) as exc:
            if isinstance(exc, RedisTimeoutError):
                redis_budget.note_timeout()
            signals.store_error.send(self, error=exc)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _call(
        self, script: Callable[..., Any], keys: list[str], args: list[Any]
    ) -> tuple[Any, bool]:
        """Run one script, again after a connection error; return (result, retried).

        Every script is safe to run twice (reads are reads; writes log their write id), so
        a retry after a reply was lost changes nothing. ``retried`` lets a caller read "not
        found" after a retry as "an earlier attempt of mine did it".
        """
        if redis_budget.spent():
            raise StoreUnavailable("an earlier Redis call of this request timed out")
        with self.redis_errors():
            for attempt, pause in enumerate((*RETRY_DELAYS, None)):
                try:
                    return script(keys=keys, args=args), attempt > 0
                except RedisConnectionError:
                    if pause is None:
                        raise
                    time.sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _session_call(self, script: Callable[..., Any], session_id: str, *args: Any) -> Any:
        return self._call(script, all_session_keys(session_id), [self.ttl, *args])[0]

    def create(self, session_id: str) -> None:
        """Create an empty session under a fresh id (see ``session_ids.new_session_id``);
        SessionIdTaken if another session has it."""
        mark = _write_mark()
        at = now_ms()
        outcome = self._session_call(self._create, session_id, at, mark, self._forget_at(at))
        if outcome == Outcome.TAKEN:
            raise SessionIdTaken(session_id)
        signals.session_created.send(self)

    def touch(self, session_id: str) -> bool:
        """Refresh the TTL and lastActivity; return whether the session exists."""
        try:
            return bool(self._session_call(self._touch, session_id, now_ms()))
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
        created_at, first, start, *raw = result
        return SessionPage(
            session_id=canonical_session_id(session_id),
            created_at=iso_from_ms(created_at),
            last_activity=iso_from_ms(at),
            messages=[decode_message(item) for item in raw],
            next_cursor=int(start) if int(start) > int(first) else None,
        )

    def append(
        self,
        session_id: str,
        messages: Sequence[NewMessage],
        *,
        create: bool = False,
        record: IdempotentWrite | None = None,
    ) -> None:
        """Append ``messages`` atomically and exactly once, trimming to the maximum.

        Without ``create`` a vanished session raises SessionNotFound instead of coming back;
        with it, the session must not exist yet (SessionIdTaken) and is created with these
        messages. With a ``record``, the session's Idempotency-Key record is marked done in
        the same step, and AlreadyRecorded is raised (nothing stored) if another attempt of
        the key did so already. The record joins the session's write log, and so, with
        ``create``, does the key's session-less record (the one that reserved this id), so
        that deleting the session deletes both.
        """
        keys = all_session_keys(session_id)
        at = now_ms()
        record_args: list[Any] = ["", "", "", "", ""]
        if record is not None:
            keys.append(idempotency_key(record.key, session_id))
            origin = idempotency_key(record.key, None) if create else ""
            record_args = [
                self.record_ttl, record.fingerprint, canonical_session_id(session_id),
                record.result, origin,
            ]  # fmt: skip
        encoded = [m.encode() for m in messages]
        args = [
            self.ttl, at, self.max_messages, int(create), _write_mark(), self._forget_at(at),
            *record_args, *encoded,
        ]  # fmt: skip
        outcome, _ = self._call(self._append, keys, args)
        if outcome == Outcome.GONE:
            raise SessionNotFound(session_id)
        if outcome == Outcome.TAKEN:
            raise SessionIdTaken(session_id)
        if outcome == Outcome.RECORDED:
            raise AlreadyRecorded(session_id)
        if create:
            signals.session_created.send(self)
        signals.messages_stored.send(self, count=len(encoded))

    def claim(
        self,
        key: str,
        fingerprint: str,
        *,
        session_id: str | None,
        proposed_session_id: str | None = None,
        lease_ms: int,
        owner: str,
    ) -> IdempotencyClaim:
        """Find or start the record of Idempotency-Key ``key`` for ``session_id`` (None: the
        session-less record, which reserves ``proposed_session_id`` for the new session).
        In a session that no longer exists the status is ``GONE`` and nothing is written.
        ``owner`` is this attempt's write id: its own claim, run twice, is ``NEW`` both times.
        """
        at = now_ms()
        # Records hold canonical ids, so a replay answers with the id the first reply gave.
        sid = canonical_session_id(session_id) if session_id else proposed_session_id or ""
        args = [self.record_ttl, at, fingerprint, at + lease_ms, owner, sid]
        keys = [idempotency_key(key, session_id)]
        if session_id is not None:
            keys += [writes_key(session_id), session_keys(session_id)[0]]
        (status, found_sid, *extra), _ = self._call(self._claim, keys, args)
        status = ClaimStatus(status)
        if status == ClaimStatus.DONE:
            return IdempotencyClaim(status, found_sid or None, result=extra[0])
        if status == ClaimStatus.BUSY:
            return IdempotencyClaim(status, found_sid or None, lease_until_ms=int(extra[0]))
        return IdempotencyClaim(status, found_sid or None)

    def release(self, key: str, *, session_id: str | None, owner: str) -> None:
        """End ``owner``'s lease on the record now, so a retry need not wait for it to lapse."""
        self._call(self._release, [idempotency_key(key, session_id)], [owner])

    def finish(self, key: str, record: IdempotentWrite, *, session_id: str) -> None:
        """Mark the session-less record of ``key`` done: its exchange is in ``session_id``."""
        args = [record.fingerprint, canonical_session_id(session_id), record.result]
        self._call(self._finish, [idempotency_key(key, None)], args)

    def delete(self, session_id: str) -> None:
        """Delete every key of the session, its Idempotency-Key records included, in one
        script; SessionNotFound if there was nothing to delete.

        A delete leaves nothing behind, so a run that finds nothing after a retry is taken
        as the earlier attempt's success (its reply was lost), not as a missing session.
        On Redis Cluster the session-less record that started the session (another hash
        tag) is deleted by a second command right after the script.
        """
        keys = all_session_keys(session_id)
        (removed, *elsewhere), retried = self._call(
            self._delete, keys, [int(self.single_node), SESSIONLESS_RECORD_PREFIX]
        )
        if elsewhere:
            with self.redis_errors():
                removed += self.client.delete(*elsewhere)
        if not removed and not retried:
            raise SessionNotFound(session_id)

    def ping(self) -> bool:
        """True when Redis answers PING; StoreUnavailable otherwise."""
        with self.redis_errors():
            return bool(self.client.ping())

    @staticmethod
    def _forget_at(at_ms: int) -> int:
        return at_ms + WRITE_ID_WINDOW * 1000
