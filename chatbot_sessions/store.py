"""The session repository: every Redis key, command and TTL rule of a chat session.

Layout (one Redis Cluster hash tag per session, so multi-key scripts never hit CROSSSLOT):

    chat_session:{<id>}           hash  createdAt, lastActivity (epoch ms), seq (ever appended)
    chat_session:{<id>}:messages  list  one compact entry per message, oldest first
    chat_session:{<id>}:idem:<h>  hash  Idempotency-Key record of a send into that session
    chat_session:{<id>}:idem      set   registry: the names of the session's records
    chat_session:idem:{<h>}       hash  Idempotency-Key record of a send without a session

``<h>`` is the SHA-256 of the client's Idempotency-Key, so no client string reaches a key
name. A record is ``state`` (pending/done), ``fp`` (fingerprint of the request), ``sid``,
``lease``/``owner`` while pending and ``result`` once done; it lives IDEMPOTENCY_TTL from
its creation (a per-session record: from its append).

The registry lets DELETE remove a session's records without SCAN: the scripts that create a
record add its name to the registry in the same step, including the session-less record of
the send that created the session, and give the registry max(SESSION_TTL,
IDEMPOTENCY_TTL), so it outlives every record it names and no key lives without a TTL.
Every access extends the registry's TTL to at least SESSION_TTL (``EXPIRE ... GT``, never
shortening it), so the session cannot outlive it either. Records are replay caches with
their own window: no access extends them.

Each public method is exactly one round trip: a server-side Lua script that does the
access, refreshes the TTL of the session's keys (meta, messages, registry) and updates
``lastActivity`` atomically. The append
script refuses to recreate a session that expired or was deleted, and trims to the
maximum in the same step, so concurrent writers can neither lose nor reorder messages.
(One exception: on Redis Cluster, deleting a session whose first send was keyed takes a
second command for the session-less record, which lives under another hash tag.)
This module knows Redis and nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from chatbot_sessions import signals
from chatbot_sessions.exceptions import AlreadyRecorded, SessionNotFound, StoreUnavailable
from chatbot_sessions.replies.base import Message, Source
from chatbot_sessions.session_ids import parse_session_id
from chatbot_sessions.timestamps import iso_from_ms, now_ms

KEY_PREFIX = "chat_session:"
#: Names of the session-less Idempotency-Key records start with this (then ``{<h>}``).
SESSIONLESS_RECORD_PREFIX = f"{KEY_PREFIX}idem:{{"
_TYPE_CODES = {"user": "u", "assistant": "a"}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}


# KEYS: meta, messages, registry. ARGV: ttl, now_ms. Returns 1 if the session exists (and
# was touched). The registry's TTL only ever grows here (GT: it may hold a longer
# idempotency window; a no-op when the session has no registry), so it never ends first.
def _refresh(if_missing: str) -> str:
    """The access rule every reading script opens with, written once: stop with
    ``if_missing`` when the session is gone, else re-arm all its TTLs and lastActivity."""
    return f"""
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then return {if_missing} end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1], 'GT')
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
"""


_TOUCH = _refresh("0") + "return 1\n"

# KEYS: meta, messages, registry (unused: a new session has none). ARGV: ttl, now_ms.
# Creates an empty session; 0 if the id is taken.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'lastActivity', ARGV[2], 'seq', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: meta, messages, registry. ARGV: ttl, now_ms, limit (0 = all), before (-1 = newest).
# Returns nil if missing, else {createdAt, first_abs, start_abs, messages...} where
# message positions are absolute (counted since the session began) so cursors survive trims.
# Opens with the same access rule as _TOUCH (_refresh).
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

# KEYS: meta, messages, registry[, idempotency record]. ARGV: ttl, now_ms, max_messages,
# create ('1' = new session), record_ttl, fingerprint, session id, result, registry_ttl,
# origin (name of the session-less record that reserved a new session, or ''), msgs...
# (the record arguments are ignored without the fourth key). Returns the new seq, -1 if
# the session is gone (never resurrected), -2 if create hit an id that already exists, -3
# if the record is already done: the exchange was stored before and must not be stored
# again. Marking the record done in the same script means no crash can store without
# recording or vice versa; registering it (and the origin) here means DELETE finds both.
_APPEND = """
local record = KEYS[4]
if record and redis.call('HGET', record, 'state') == 'done' then return -3 end
local exists = redis.call('EXISTS', KEYS[1])
if ARGV[4] == '1' then
  if exists == 1 then return -2 end
  redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'seq', 0)
elseif exists == 0 then
  return -1
end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 11))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', #ARGV - 10)
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
if record then
  redis.call('HSET', record, 'state', 'done', 'fp', ARGV[6], 'sid', ARGV[7], 'result', ARGV[8])
  redis.call('HDEL', record, 'lease', 'owner')
  redis.call('EXPIRE', record, ARGV[5])
  redis.call('SADD', KEYS[3], record)
  if ARGV[10] ~= '' then redis.call('SADD', KEYS[3], ARGV[10]) end
  redis.call('EXPIRE', KEYS[3], ARGV[9])
else
  redis.call('EXPIRE', KEYS[3], ARGV[1], 'GT')
end
return seq
"""

# KEYS: record[, registry, meta] (the last two for a record in a session). ARGV: ttl,
# now_ms, fingerprint, lease_until_ms, owner, proposed session id, registry_ttl.
# Returns {status, sid[, result or lease_until]}: 'new' (this caller now holds the lease,
# also when taking over a lapsed one), 'busy' (another holds it), 'done', 'mismatch', or
# 'gone' when the session no longer exists (nothing written: no record of a deleted session).
_CLAIM = """
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then return {'gone', ''} end
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease', 'sid', 'result')
if not r[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[3], 'lease', ARGV[4],
             'owner', ARGV[5], 'sid', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  if KEYS[2] then
    redis.call('SADD', KEYS[2], KEYS[1])
    redis.call('EXPIRE', KEYS[2], ARGV[7])
  end
  return {'new', ARGV[6]}
end
if r[2] ~= ARGV[3] then return {'mismatch', r[4]} end
if r[1] == 'done' then return {'done', r[4], r[5]} end
if tonumber(r[3]) > tonumber(ARGV[2]) then return {'busy', r[4], r[3]} end
redis.call('HSET', KEYS[1], 'lease', ARGV[4], 'owner', ARGV[5])
return {'new', r[4]}
"""

# KEYS: record. ARGV: owner. Ends the owner's lease early (a failed attempt) but keeps the
# record and its session id: the attempt may still have stored, and a retry must find out.
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
# removed the record (the append registered it), and it must not come back. The record
# keeps the TTL of its claim, so it never outlives the registry that names it.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'fp', ARGV[1], 'sid', ARGV[2], 'result', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease', 'owner')
return 1
"""

# KEYS: meta, messages, registry. ARGV: '1' if the script may delete keys of other hash
# tags (a single server; never on a cluster), the session-less record prefix. Deletes the
# session, each record its registry names and the registry, atomically. Records of this
# session share its slot; a session-less record does not, so on a cluster its name is
# returned for the caller to delete. Returns {keys deleted (registry not counted), names...}.
_DELETE = """
local removed = redis.call('DEL', KEYS[1], KEYS[2])
local own = KEYS[1] .. ':idem:'
local other = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[3])) do
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

T = TypeVar("T")


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
    """Meta, messages and registry: the keys whose TTL every access of the session refreshes."""
    meta, messages = session_keys(session_id)
    return [meta, messages, f"{meta}:idem"]


def registry_key(session_id: str) -> str:
    """The set naming every Idempotency-Key record that DELETE must remove with the session."""
    return all_session_keys(session_id)[2]


def idempotency_key(client_key: str, session_id: str | None) -> str:
    """The record key of an Idempotency-Key: in the session's hash tag, or its own if none."""
    digest = hashlib.sha256(client_key.encode("utf-8")).hexdigest()
    if session_id is None:
        return f"{SESSIONLESS_RECORD_PREFIX}{digest}}}"
    return f"{registry_key(session_id)}:{digest}"


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
    """What claiming an Idempotency-Key found; ``new`` means the caller now holds the lease."""

    status: Literal["new", "busy", "done", "mismatch", "gone"]
    session_id: str | None
    result: str | None = None
    lease_until_ms: int = 0


@dataclass(frozen=True)
class IdempotentWrite:
    """The record an append marks done in the same script: key, request fingerprint, result."""

    key: str
    fingerprint: str
    result: str


class SessionStore:
    """Thread-safe repository of chat sessions over one shared redis-py client."""

    def __init__(
        self, client: redis.Redis, *, ttl: int, max_messages: int, idempotency_ttl: int = 600
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.max_messages = max_messages
        self.idempotency_ttl = idempotency_ttl
        # The registry must outlive every record it names, and lives at least as the session.
        self.registry_ttl = max(ttl, idempotency_ttl)
        # A script may touch another hash tag's key on a single server, never on a cluster.
        self._one_node = not isinstance(client, RedisCluster)
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
            signals.store_error.send(self, error=exc)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _run(self, script: Callable[..., T], session_id: str, *args: Any) -> T:
        keys = all_session_keys(session_id)
        with self.redis_errors():
            return script(keys=keys, args=[self.ttl, *args])

    def create(self, session_id: str) -> None:
        """Create an empty session under a fresh id (see ``session_ids.new_session_id``)."""
        if not self._run(self._create, session_id, now_ms()):
            raise ValueError(f"session id {session_id} is already taken")
        signals.session_created.send(self)

    def touch(self, session_id: str) -> bool:
        """Refresh the TTL and lastActivity; return whether the session exists."""
        try:
            return bool(self._run(self._touch, session_id, now_ms()))
        except SessionNotFound:
            return False

    def read(self, session_id: str, *, limit: int = 0, before: int | None = None) -> SessionPage:
        """Return the newest ``limit`` messages (all if 0) before absolute position ``before``.

        Raises SessionNotFound for a missing session; the access refreshes its TTL. The page
        carries the canonical id, whatever case the caller spelled it in.
        """
        at = now_ms()
        result = self._run(self._read, session_id, at, limit, -1 if before is None else before)
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
    ) -> int:
        """Append ``messages`` atomically, trimming to the maximum; return the message count.

        Without ``create`` a vanished session raises SessionNotFound instead of coming back;
        with it, the session must not exist yet and is created with these messages. With a
        ``record``, the session's Idempotency-Key record is marked done in the same step, and
        AlreadyRecorded is raised (nothing stored) if it was done already. The record joins
        the session's registry, and so, with ``create``, does the key's session-less record
        (the one that reserved this id), so that deleting the session deletes both.
        """
        keys = all_session_keys(session_id)
        record_args: list[Any] = ["", "", "", "", "", ""]
        if record is not None:
            keys.append(idempotency_key(record.key, session_id))
            origin = idempotency_key(record.key, None) if create else ""
            record_args = [
                self.idempotency_ttl, record.fingerprint, canonical_session_id(session_id),
                record.result,
                self.registry_ttl, origin,
            ]  # fmt: skip
        encoded = [m.encode() for m in messages]
        args = [self.ttl, now_ms(), self.max_messages, int(create), *record_args, *encoded]
        with self.redis_errors():
            result = self._append(keys=keys, args=args)
        if result == -1:
            raise SessionNotFound(session_id)
        if result == -2:
            raise ValueError(f"session id {session_id} is already taken")
        if result == -3:
            raise AlreadyRecorded(session_id)
        if create:
            signals.session_created.send(self)
        signals.messages_stored.send(self, count=len(encoded))
        return int(result)

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
        In a session that no longer exists the status is ``gone`` and nothing is written.
        """
        at = now_ms()
        # Records hold canonical ids, so a replay answers with the id the first reply gave.
        sid = canonical_session_id(session_id) if session_id else proposed_session_id or ""
        args = [self.idempotency_ttl, at, fingerprint, at + lease_ms, owner, sid, self.registry_ttl]
        keys = [idempotency_key(key, session_id)]
        if session_id is not None:
            keys += [registry_key(session_id), session_keys(session_id)[0]]
        with self.redis_errors():
            status, found_sid, *extra = self._claim(keys=keys, args=args)
        if status == "done":
            return IdempotencyClaim("done", found_sid or None, result=extra[0])
        if status == "busy":
            return IdempotencyClaim("busy", found_sid or None, lease_until_ms=int(extra[0]))
        return IdempotencyClaim(status, found_sid or None)

    def release(self, key: str, *, session_id: str | None, owner: str) -> None:
        """End ``owner``'s lease on the record now, so a retry need not wait for it to lapse."""
        with self.redis_errors():
            self._release(keys=[idempotency_key(key, session_id)], args=[owner])

    def finish(self, key: str, record: IdempotentWrite, *, session_id: str) -> None:
        """Mark the session-less record of ``key`` done: its exchange is in ``session_id``."""
        args = [record.fingerprint, canonical_session_id(session_id), record.result]
        with self.redis_errors():
            self._finish(keys=[idempotency_key(key, None)], args=args)

    def delete(self, session_id: str) -> None:
        """Delete every key of the session, its Idempotency-Key records included, in one
        script; SessionNotFound if there was nothing to delete.

        On Redis Cluster the session-less record that started the session (another hash
        tag) is deleted by a second command right after the script.
        """
        keys = all_session_keys(session_id)
        with self.redis_errors():
            removed, *elsewhere = self._delete(
                keys=keys, args=[int(self._one_node), SESSIONLESS_RECORD_PREFIX]
            )
            if elsewhere:
                removed += self.client.delete(*elsewhere)
        if not removed:
            raise SessionNotFound(session_id)

    def ping(self) -> bool:
        """True when Redis answers PING; StoreUnavailable otherwise."""
        with self.redis_errors():
            return bool(self.client.ping())
