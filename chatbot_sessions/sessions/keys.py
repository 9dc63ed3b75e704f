"""The Redis key layout of a session, its inverse, and the lifetimes of its keys.

One Redis Cluster hash tag per session, so multi-key scripts never hit CROSSSLOT:

    chat_session:{<id>}           hash  createdAt, lastActivity (epoch ms), seq (ever appended)
    chat_session:{<id>}:messages  list  one compact entry per message, oldest first
    chat_session:{<id>}:writes    zset  the write log: recent write ids and record names
    chat_session:{<id>}:feedback  hash  message id -> the rating of that answer (codec JSON)
    chat_session:{<id>}:idem:<h>  hash  Idempotency-Key record of a send into that session
    chat_session:idem:{<h>}       hash  Idempotency-Key record of a send without a session
    chat_session:{<id>}:reply:<r> stream the events of a streamed reply (start, deltas, done)

Outside the sessions, and outside ``chat_session:`` (so ``purge`` never touches them), the
knowledge base's reload state, in one hash tag so a cluster keeps the two together:

    chatbot_sessions:{kb}:version string  the knowledge-base version (INCR by ``flask kb reload``)
    chatbot_sessions:{kb}:workers hash    worker id (host:pid) -> JSON of what it serves

``<id>`` is always a canonical UUID v4 (``ids.parse_session_id`` is the one gate client
input passes through) and ``<h>`` the SHA-256 of the client's Idempotency-Key, so no client
string reaches a key name.

Lifetimes (the one TTL rule; the scripts in ``scripts.py`` apply it):

- every access re-arms meta, messages, the write log and the feedback (``session_keys``)
  to SESSION_TTL, and deleting the session deletes them all;
- a write id stays in the log ``WRITE_ID_WINDOW`` seconds;
- a record lives ``record_ttl`` from its claim and is never extended, so it never
  outlives its session.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from chatbot_sessions.exceptions import SessionNotFound
from chatbot_sessions.sessions.ids import parse_session_id

KEY_PREFIX = "chat_session:"
#: Names of the session-less Idempotency-Key records start with this (then ``{<h>}``).
SESSIONLESS_RECORD_PREFIX = f"{KEY_PREFIX}idem:{{"
#: Matches meta keys only (``chat_session:{<id>}``): ``{`` and ``}`` are literal in a glob.
META_PATTERN = KEY_PREFIX + "{*}"
#: Matches feedback keys (``chat_session:{<id>}:feedback``); ``session_id_of_feedback``
#: drops any other key that happens to fit.
_FEEDBACK_SUFFIX = ":feedback"
FEEDBACK_PATTERN = KEY_PREFIX + "{*}" + _FEEDBACK_SUFFIX
#: Matches every key of every session (and its records), and nothing else.
ALL_PATTERN = KEY_PREFIX + "*"
#: Seconds a write id stays in the log: past gunicorn's worker timeout (60 s), after which
#: no request that could resend the id is still alive.
WRITE_ID_WINDOW = 120
#: The version workers compare with the one they serve; absent means 0 (never reloaded).
KNOWLEDGE_VERSION_KEY = "chatbot_sessions:{kb}:version"
#: What each worker serves: one field per worker, refreshed while it lives (``replies.reloading``).
KNOWLEDGE_WORKERS_KEY = "chatbot_sessions:{kb}:workers"


def canonical_session_id(session_id: str) -> str:
    """The id in the one form keys, records and answers use; a malformed id is not found."""
    canonical = parse_session_id(session_id)
    if canonical is None:
        raise SessionNotFound(session_id)
    return canonical


def meta_key(session_id: str) -> str:
    """The session's own hash: it exists exactly while the session does."""
    return session_keys(session_id)[0]


@lru_cache(maxsize=4096)
def session_keys(session_id: str) -> tuple[str, str, str, str]:
    """Meta, messages, write log and feedback: the keys whose TTL every access re-arms, in
    the order every script's KEYS[1..4] has them (``scripts.py``).

    Remembered for the most recent ids: a request names its session in two to five store
    calls, and each time the id was checked, made canonical and four names built (about
    12,000 instructions). A malformed id raises, and an exception is never remembered.
    """
    meta = f"{KEY_PREFIX}{{{canonical_session_id(session_id)}}}"
    return (meta, f"{meta}:messages", f"{meta}:writes", f"{meta}{_FEEDBACK_SUFFIX}")


def messages_key(session_id: str) -> str:
    """The list of the session's messages, oldest first."""
    return session_keys(session_id)[1]


def writes_key(session_id: str) -> str:
    """The session's write log: recent write ids and the names of its idempotency records."""
    return session_keys(session_id)[2]


def feedback_key(session_id: str) -> str:
    """The session's ratings: message id (absolute position) -> that answer's rating."""
    return session_keys(session_id)[3]


def idempotency_key(client_key: str, session_id: str | None) -> str:
    """The record key of an Idempotency-Key: in the session's hash tag, or its own if none."""
    digest = hashlib.sha256(client_key.encode("utf-8")).hexdigest()
    if session_id is None:
        return f"{SESSIONLESS_RECORD_PREFIX}{digest}}}"
    return f"{meta_key(session_id)}:idem:{digest}"


def reply_events_key(session_id: str, reply_id: str) -> str:
    """The Redis Stream of one streamed reply's events, in the session's hash tag.
    ``reply_id`` is ours (``new_reply_id``) or checked by ``ids.parse_reply_id`` first."""
    return f"{meta_key(session_id)}:reply:{reply_id}"


def session_id_of_meta(key: str) -> str | None:
    """The inverse of ``meta_key``: the id a meta key names, or None for any other key."""
    if not (key.startswith(KEY_PREFIX + "{") and key.endswith("}")):
        return None
    return parse_session_id(key[len(KEY_PREFIX) + 1 : -1])


def session_id_of_feedback(key: str) -> str | None:
    """The inverse of ``feedback_key``: the id a feedback key names, or None for any other."""
    if not key.endswith(_FEEDBACK_SUFFIX):
        return None
    return session_id_of_meta(key[: -len(_FEEDBACK_SUFFIX)])


def record_ttl(session_ttl: int, idempotency_ttl: int) -> int:
    """Seconds a record lives: the key's window, but never longer than its session's TTL
    (a session lives at least SESSION_TTL from the request that made the record)."""
    return min(session_ttl, idempotency_ttl)
