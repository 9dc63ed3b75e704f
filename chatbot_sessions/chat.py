"""One chat turn: read the context, generate the reply, store both turns exactly once.

Kept out of the views so the HTTP layer stays a thin parse-call-return, and out of the
store so the store stays a repository. A turn costs two Redis round trips: one read of the
recent context (which also refreshes the TTL) and one atomic append; an Idempotency-Key
adds a claim (and, for a send that starts a session, one more step), all in
``idempotency.py``. See docs/reliability.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chatbot_sessions import extensions, signals
from chatbot_sessions.config import Settings
from chatbot_sessions.domain import Exchange, Message, NewMessage
from chatbot_sessions.exceptions import SessionNotFound
from chatbot_sessions.replies.base import ReplyGenerator
from chatbot_sessions.sessions.idempotency import TurnWrites
from chatbot_sessions.sessions.ids import parse_session_id
from chatbot_sessions.sessions.store import SessionStore
from chatbot_sessions.timestamps import now_ms

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["ChatService", "Exchange", "init_app"]


def _no_check() -> None:
    return None


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
        before_new_session: Callable[[], None] = _no_check,
    ):
        self.store = store
        self.generator = generator
        self.context_messages = context_messages
        self.writes = TurnWrites(
            store, lease_seconds=idempotency_lease, wait_seconds=idempotency_wait
        )
        # Called before a turn starts a session, so that it can refuse (e.g. a rate limit on
        # creating sessions): whatever it raises ends the turn with nothing stored.
        self.before_new_session = before_new_session

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

        With ``idempotency_key``, a repeat of an answered request returns the stored reply
        (see ``TurnWrites.begin`` for the other cases).
        """
        asked_at = now_ms()
        session_id = parse_session_id(raw_session_id)
        history = self._context(session_id)
        attempt = self.writes.begin(
            idempotency_key, question, session_id if history is not None else None
        )
        if attempt.replay is not None:
            return attempt.replay
        try:
            if attempt.session_id is None:
                # Inside the try: a refused keyed turn ends its lease (``abandon``), so the
                # client's retry is refused again at once instead of waiting on the lease.
                self.before_new_session()
            started = time.perf_counter()
            reply = self.generator.generate(question, history if attempt.session_id else [])
            signals.reply_generated.send(
                self, seconds=time.perf_counter() - started, question=question, reply=reply
            )
            turns = [
                NewMessage("user", question, asked_at),
                NewMessage("assistant", reply.text, now_ms(), tuple(reply.sources)),
            ]
            return attempt.commit(turns, reply)
        except BaseException:
            attempt.abandon()
            raise


def init_app(app: Flask, settings: Settings) -> ChatService:
    """Register the chat service over the app's store and generator (register those first)."""
    resources = extensions.resources(app)
    chat = ChatService(
        extensions.get_required(resources.store, "store"),
        extensions.get_required(resources.generator, "generator"),
        settings.context_messages,
        # A keyed request holds its key while it may still be generating (LLM_TIMEOUT).
        idempotency_lease=settings.llm_timeout + 2,
        idempotency_wait=settings.idempotency_wait,
    )
    resources.chat = chat
    return chat
