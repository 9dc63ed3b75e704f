"""One chat turn: find the session, ask the generator, store both turns.

Kept out of the views so the HTTP layer stays a thin parse-call-return, and out of the
store so the store stays a repository. A turn costs at most two Redis round trips: one
read of the recent context (which also refreshes the TTL) and one atomic append.

With an Idempotency-Key a turn first claims the key's record (one more round trip; a
session-less turn also copies its result onto that record) and its append marks the
per-session record done atomically, so a retried request replays the stored
reply instead of storing the exchange twice. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from chatbot_sessions import signals
from chatbot_sessions.exceptions import (
    AlreadyRecorded,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    SessionNotFound,
    StoreUnavailable,
)
from chatbot_sessions.replies.base import Message, Reply, ReplyGenerator, Source
from chatbot_sessions.session_ids import new_session_id, parse_session_id
from chatbot_sessions.store import (
    IdempotencyClaim,
    IdempotentWrite,
    NewMessage,
    SessionStore,
)
from chatbot_sessions.timestamps import now_ms

log = logging.getLogger(__name__)
# A duplicate in flight polls the record, first soon (most turns take milliseconds without
# an LLM), then backing off to at most every 50 ms.
_POLL_FIRST, _POLL_MAX = 0.002, 0.05


@dataclass(frozen=True)
class Exchange:
    """The outcome of a turn: which session holds it and the reply.

    ``replayed`` marks a reply returned again for a retried Idempotency-Key.
    """

    session_id: str
    reply: Reply
    replayed: bool = False


@dataclass(frozen=True)
class _Attempt:
    """One keyed request: the client's key, what the request asked, and who holds the lease."""

    key: str
    fingerprint: str
    owner: str

    def record(self, reply: Reply) -> IdempotentWrite:
        return IdempotentWrite(self.key, self.fingerprint, encode_reply(reply))


def encode_reply(reply: Reply) -> str:
    """Serialise a reply for an idempotency record, floats and all, so a replay is identical."""
    sources = [[s.title, s.source, s.score] for s in reply.sources]
    return json.dumps([reply.text, sources, reply.degraded], separators=(",", ":"))


def decode_reply(raw: str) -> Reply:
    """Inverse of ``encode_reply``."""
    text, sources, degraded = json.loads(raw)
    return Reply(text, tuple(Source(*s) for s in sources), bool(degraded))


class ChatService:
    """Answers questions within sessions, creating a session when the client has none."""

    def __init__(
        self,
        store: SessionStore,
        generator: ReplyGenerator,
        context_messages: int,
        *,
        idempotency_lease: float = 30.0,
        idempotency_wait: float = 2.0,
    ):
        self.store = store
        self.generator = generator
        self.context_messages = context_messages
        self.lease_ms = int(idempotency_lease * 1000)
        self.wait = idempotency_wait

    def _context(self, session_id: str | None) -> Sequence[Message] | None:
        """Recent messages of an existing session, or None when there is no such session."""
        if session_id is None:
            return None
        try:
            if self.context_messages == 0:
                return [] if self.store.touch(session_id) else None
            return self.store.read(session_id, limit=self.context_messages).messages
        except SessionNotFound:
            return None

    def send(
        self, raw_session_id: str | None, question: str, idempotency_key: str | None = None
    ) -> Exchange:
        """Answer ``question`` in the given session, or in a new one if it is unknown.

        With ``idempotency_key``, a repeat of an answered request returns the stored reply,
        a different question under the same key raises IdempotencyKeyReused, and a repeat
        of one still being answered waits briefly, then raises IdempotencyInProgress.
        """
        asked_at = now_ms()
        session_id = parse_session_id(raw_session_id)
        history = self._context(session_id)
        if history is None:
            session_id = None
        if idempotency_key is None:
            return self._answer(session_id, question, history, asked_at, None, None)
        fingerprint = hashlib.sha256(question.encode("utf-8")).hexdigest()
        attempt = _Attempt(idempotency_key, fingerprint, uuid.uuid4().hex)
        claim = self._claim(attempt, session_id)
        if claim.status == "gone":  # deleted since the read above: as if the id were unknown
            session_id = history = None
            claim = self._claim(attempt, None)
        if claim.status == "done":
            return self._replay(claim)
        try:
            return self._answer(session_id, question, history, asked_at, attempt, claim.session_id)
        except BaseException:
            self._release(attempt, session_id)
            raise

    def _answer(
        self,
        session_id: str | None,
        question: str,
        history: Sequence[Message] | None,
        asked_at: int,
        attempt: _Attempt | None,
        reserved_id: str | None,
    ) -> Exchange:
        started = time.perf_counter()
        reply = self.generator.generate(question, history or [])
        signals.reply_generated.send(
            self, seconds=time.perf_counter() - started, question=question, reply=reply
        )
        turns = [
            NewMessage("user", question, asked_at),
            NewMessage("assistant", reply.text, now_ms(), tuple(reply.sources)),
        ]
        record = attempt.record(reply) if attempt else None
        if session_id is not None:
            try:
                self.store.append(session_id, turns, record=record)
                return Exchange(session_id, reply)
            except AlreadyRecorded:
                return self._replay(self._claim(attempt, session_id))  # type: ignore[arg-type]
            except SessionNotFound:
                pass  # deleted or expired while we generated: keep the turn in a new session
            if attempt is not None:
                # Retries will now miss the session, so they must find the new one by key.
                claim = self._claim(attempt, None)
                if claim.status == "done":
                    return self._replay(claim)
                reserved_id = claim.session_id
        return self._store_new(turns, reply, attempt, record, reserved_id)

    def _store_new(
        self,
        turns: list[NewMessage],
        reply: Reply,
        attempt: _Attempt | None,
        record: IdempotentWrite | None,
        reserved_id: str | None,
    ) -> Exchange:
        # The id reserved by the session-less record comes first; a UUID v4 collision (or a
        # reserved id whose record expired under it) is vanishingly rare: never merge sessions.
        candidates = [reserved_id] if reserved_id else []
        for fresh in candidates + [new_session_id() for _ in range(3)]:
            try:
                self.store.append(fresh, turns, create=True, record=record)
            except ValueError:
                continue
            except AlreadyRecorded:  # an earlier attempt of this key stored it; reply with that
                return self._replay(self._claim(attempt, fresh))  # type: ignore[arg-type]
            if attempt is not None and record is not None:
                try:
                    self.store.finish(attempt.key, record, session_id=fresh)
                except StoreUnavailable as exc:
                    # Stored and recorded under the session already; a retry finds it there
                    # once this attempt's lease lapses.
                    log.warning("could not mark idempotency record done: %s", exc)
            return Exchange(fresh, reply)
        raise RuntimeError("could not find a free session id in three tries")

    def _claim(self, attempt: _Attempt, session_id: str | None) -> IdempotencyClaim:
        """Claim the key's record, waiting up to ``self.wait`` while another request holds it."""
        deadline = time.monotonic() + self.wait
        pause = _POLL_FIRST
        while True:
            claim = self.store.claim(
                attempt.key,
                attempt.fingerprint,
                session_id=session_id,
                proposed_session_id=new_session_id() if session_id is None else None,
                lease_ms=self.lease_ms,
                owner=attempt.owner,
            )
            if claim.status == "mismatch":
                raise IdempotencyKeyReused("the Idempotency-Key was used for a different request")
            if claim.status != "busy":
                return claim
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IdempotencyInProgress(retry_after=1)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)

    def _replay(self, claim: IdempotencyClaim) -> Exchange:
        if claim.status != "done" or claim.result is None or claim.session_id is None:
            raise IdempotencyInProgress(retry_after=1)  # the record expired meanwhile
        return Exchange(claim.session_id, decode_reply(claim.result), replayed=True)

    def _release(self, attempt: _Attempt, session_id: str | None) -> None:
        with contextlib.suppress(StoreUnavailable):  # Redis is down: the lease lapses anyway
            self.store.release(attempt.key, session_id=session_id, owner=attempt.owner)
