"""Storing a chat turn exactly once, with or without the client's ``Idempotency-Key``.

The public face is one call and one object: ``TurnWrites.begin(...)`` returns an
``Attempt``; a caller generates the reply and hands the two turns to ``Attempt.commit``,
which stores them exactly once and says where. Everything about leases, polling, replays
and reply encoding stays in here; the Lua side (write ids, records) is in ``scripts.py``.

Two layers make a turn exactly-once:

1. **Write ids** (the store). Every store write carries an id the script logs atomically
   with the write, so the store's own retry after a lost reply changes nothing.
2. **Idempotency-Key records** (here). A client that lost our answer retries with the same
   key; the key's record turns that retry into a replay of the stored reply:

   - ``claim``: absent -> create it ``pending`` with a lease, and go on; ``done`` -> replay;
     ``pending`` under another live lease -> wait up to ``wait`` for it, then 409;
     lapsed lease -> take over (its holder crashed or gave up).
   - the append marks the record ``done`` in the same script (``AlreadyRecorded`` if an
     earlier attempt did), and, for a send that starts a session, ``finish`` copies the
     result onto the session-less record so retries find it directly.
   - a failed attempt ends its lease at once (``abandon``) but keeps the record: its append
     may have run after all, and the retry must find out.

A plain send is the same flow without a record: ``commit`` appends into the session, or
into a new one when the session is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Sequence

from chatbot_sessions.domain import Exchange, NewMessage, Reply
from chatbot_sessions.exceptions import (
    AlreadyRecorded,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    SessionIdTaken,
    SessionNotFound,
    StoreUnavailable,
)
from chatbot_sessions.sessions.codec import decode_reply, encode_reply
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.store import (
    ClaimStatus,
    IdempotencyClaim,
    IdempotentWrite,
    SessionStore,
)

log = logging.getLogger(__name__)
# A duplicate in flight polls the record, first soon (most turns take milliseconds without
# an LLM), then backing off to at most every 50 ms.
_POLL_FIRST, _POLL_MAX = 0.002, 0.05
# A new session's id is fresh UUID v4; a collision is vanishingly rare, but never merge.
_FRESH_ID_TRIES = 3


class Attempt:
    """One send on its way to the store: where it goes, or the reply it replays.

    ``session_id`` is the session the turn goes into (None: a new one); ``replay`` is set
    when a keyed send was answered before, and then nothing is to be generated or stored;
    ``joins`` (session id, reply id) when another attempt of the key is streaming its reply
    right now, for a streaming client to follow instead.
    """

    def __init__(
        self,
        writes: TurnWrites,
        session_id: str | None,
        *,
        key: str | None = None,
        fingerprint: str = "",
        owner: str = "",
        reserved_id: str | None = None,
        replay: Exchange | None = None,
        joins: tuple[str, str] | None = None,
    ) -> None:
        self._writes = writes
        self.session_id = session_id
        self.replay = replay
        self.joins = joins
        # Where the key's record (and this attempt's lease) is: the session, or None for the
        # session-less record of a send that starts a session.
        self._claimed_in = session_id
        self._key = key
        self._fingerprint = fingerprint
        self._owner = owner
        self._reserved_id = reserved_id

    def open_session(self) -> str:
        """Create the new session now, for a reply that is streamed: its events need a home,
        and its first event names the session before any text is written. The turn is
        committed into it later, like any turn into an existing session."""
        if self.session_id is not None:
            return self.session_id
        store = self._writes.store
        for fresh in self._new_session_ids():
            try:
                store.create(fresh)
            except SessionIdTaken:
                if fresh != self._reserved_id:
                    continue  # a UUID v4 collision: never merge sessions
                # The key's own reserved id: an earlier attempt of this key created it.
            self.session_id = fresh
            return fresh
        raise SessionIdTaken("fresh ids")

    def commit(self, turns: Sequence[NewMessage], reply: Reply) -> Exchange:
        """Store ``turns`` exactly once; return the exchange (or the replay of an earlier one)."""
        store = self._writes.store
        record = self._record(reply)
        started_by_key = record is not None and self._claimed_in is None
        if self.session_id is not None:
            try:
                message_id = store.append(
                    self.session_id, turns, record=record, started_by_key=started_by_key
                )
                if started_by_key:
                    self._finish(self.session_id, record, message_id)  # type: ignore[arg-type]
                return Exchange(self.session_id, reply, message_id=message_id)
            except AlreadyRecorded:
                return self._writes.replay_of(self._claim(self.session_id))
            except SessionNotFound:
                pass  # deleted or expired while we generated: keep the turn in a new session
            if self._key is not None:
                # Retries will now miss the session, so they must find the new one by key.
                claim = self._claim(None)
                self._claimed_in = None
                if claim.status == ClaimStatus.DONE:
                    return self._writes.replay_of(claim)
                self._reserved_id = claim.session_id
        return self._commit_new(turns, reply, record)

    def _new_session_ids(self) -> list[str]:
        """Ids to try for a new session: the one the key's record reserved first, then fresh
        UUID v4s (a collision is vanishingly rare, but sessions are never merged)."""
        reserved = [self._reserved_id] if self._reserved_id else []
        return reserved + [new_session_id() for _ in range(_FRESH_ID_TRIES)]

    def abandon(self) -> None:
        """The attempt failed: end its lease now so the client's retry need not wait."""
        if self._key is None:
            return
        with contextlib.suppress(StoreUnavailable):  # Redis is down: the lease lapses anyway
            self._writes.store.release(self._key, session_id=self._claimed_in, owner=self._owner)

    def _record(self, reply: Reply) -> IdempotentWrite | None:
        if self._key is None:
            return None
        return IdempotentWrite(self._key, self._fingerprint, encode_reply(reply))

    def _claim(self, session_id: str | None) -> IdempotencyClaim:
        assert self._key is not None
        return self._writes.claim(self._key, self._fingerprint, self._owner, session_id)

    def _commit_new(
        self, turns: Sequence[NewMessage], reply: Reply, record: IdempotentWrite | None
    ) -> Exchange:
        store = self._writes.store
        for fresh in self._new_session_ids():
            try:
                message_id = store.append(fresh, turns, create=True, record=record)
            except SessionIdTaken:
                continue
            except AlreadyRecorded:
                # An earlier attempt of this key stored it and died before marking the
                # session-less record done: reply with what it stored, and mark it now.
                claim = self._claim(fresh)
                exchange = self._writes.replay_of(claim)
                assert record is not None and claim.result is not None
                done = IdempotentWrite(record.key, record.fingerprint, claim.result)
                self._finish(fresh, done, claim.message_id)
                return exchange
            if record is not None:
                self._finish(fresh, record, message_id)
            return Exchange(fresh, reply, message_id=message_id)
        raise SessionIdTaken(self._reserved_id or "fresh ids")

    def _finish(self, session_id: str, record: IdempotentWrite, message_id: int | None) -> None:
        try:
            self._writes.store.finish(
                record.key, record, session_id=session_id, message_id=message_id
            )
        except StoreUnavailable as exc:
            # Stored and recorded under the session already; a retry finds it there once
            # this attempt's lease lapses.
            log.warning("could not mark idempotency record done: %s", exc)


class TurnWrites:
    """Begins attempts: plain ones at once, keyed ones by claiming the key's record."""

    def __init__(self, store: SessionStore, *, lease_seconds: float, wait_seconds: float):
        self.store = store
        self.lease_ms = int(lease_seconds * 1000)
        self.wait = wait_seconds

    def begin(
        self, key: str | None, question: str, session_id: str | None, *, reply_id: str = ""
    ) -> Attempt:
        """Start storing a turn for ``question`` in ``session_id`` (None: a new session).

        With ``key``: a repeat of an answered request comes back with ``replay`` set, a
        different question under the same key raises IdempotencyKeyReused, and a repeat of
        one still being answered waits briefly, then raises IdempotencyInProgress. A key's
        session that was deleted meanwhile is treated as unknown: the turn starts a new one.
        ``reply_id`` names the reply this attempt will stream: a repeat that comes while it
        streams is handed it in ``joins`` at once, instead of waiting.
        """
        if key is None:
            return Attempt(self, session_id)
        fingerprint = hashlib.sha256(question.encode("utf-8")).hexdigest()
        owner = secrets.token_hex(16)  # this attempt's write id on the record
        claim = self.claim(key, fingerprint, owner, session_id, reply_id=reply_id)
        if claim.status == ClaimStatus.GONE:
            session_id = None
            claim = self.claim(key, fingerprint, owner, None, reply_id=reply_id)
        if claim.status == ClaimStatus.BUSY:  # only when it streams: joining beats waiting
            joins = (claim.session_id or "", claim.reply_id)
            return Attempt(self, session_id, key=key, joins=joins)
        replay = self.replay_of(claim) if claim.status == ClaimStatus.DONE else None
        reserved = claim.session_id if session_id is None else None
        return Attempt(
            self, session_id, key=key, fingerprint=fingerprint, owner=owner,
            reserved_id=reserved, replay=replay,
        )  # fmt: skip

    def claim(
        self,
        key: str,
        fingerprint: str,
        owner: str,
        session_id: str | None,
        *,
        reply_id: str = "",
    ) -> IdempotencyClaim:
        """Claim the key's record, waiting up to ``wait`` while another request holds it
        (not at all when the holder streams its reply and this attempt could join it)."""
        deadline = time.monotonic() + self.wait
        pause = _POLL_FIRST
        while True:
            claim = self.store.claim(
                key,
                fingerprint,
                session_id=session_id,
                proposed_session_id=new_session_id() if session_id is None else None,
                lease_ms=self.lease_ms,
                owner=owner,
                reply_id=reply_id,
            )
            if claim.status == ClaimStatus.MISMATCH:
                raise IdempotencyKeyReused("the Idempotency-Key was used for a different request")
            if claim.status != ClaimStatus.BUSY or (reply_id and claim.reply_id):
                return claim
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IdempotencyInProgress(retry_after=1)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)

    @staticmethod
    def replay_of(claim: IdempotencyClaim) -> Exchange:
        """The stored exchange a done record describes, marked as replayed."""
        if claim.status != ClaimStatus.DONE or claim.result is None or claim.session_id is None:
            raise IdempotencyInProgress(retry_after=1)  # the record expired meanwhile
        return Exchange(
            claim.session_id,
            decode_reply(claim.result),
            replayed=True,
            message_id=claim.message_id,
        )
