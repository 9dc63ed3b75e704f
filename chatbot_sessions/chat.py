"""One chat turn: find the session, ask the generator, store both turns.

Kept out of the views so the HTTP layer stays a thin parse-call-return, and out of the
store so the store stays a repository. A turn costs at most two Redis round trips: one
read of the recent context (which also refreshes the TTL) and one atomic append.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from chatbot_sessions import signals
from chatbot_sessions.exceptions import SessionNotFound
from chatbot_sessions.replies.base import Message, Reply, ReplyGenerator
from chatbot_sessions.session_ids import new_session_id, parse_session_id
from chatbot_sessions.store import NewMessage, SessionStore, now_ms


@dataclass(frozen=True)
class Exchange:
    """The outcome of a turn: which session holds it, the reply, and whether it is new."""

    session_id: str
    reply: Reply
    new_session: bool


class ChatService:
    """Answers questions within sessions, creating a session when the client has none."""

    def __init__(self, store: SessionStore, generator: ReplyGenerator, context_messages: int):
        self.store = store
        self.generator = generator
        self.context_messages = context_messages

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

    def send(self, raw_session_id: str | None, question: str) -> Exchange:
        """Answer ``question`` in the given session, or in a new one if it is unknown."""
        asked_at = now_ms()
        session_id = parse_session_id(raw_session_id)
        history = self._context(session_id)
        started = time.perf_counter()
        reply = self.generator.generate(question, history or [])
        signals.reply_generated.send(
            self, seconds=time.perf_counter() - started, question=question, reply=reply
        )
        turns = [
            NewMessage("user", question, asked_at),
            NewMessage("assistant", reply.text, now_ms(), tuple(reply.sources)),
        ]
        if history is not None and session_id is not None:
            try:
                self.store.append(session_id, turns)
                return Exchange(session_id, reply, new_session=False)
            except SessionNotFound:
                pass  # deleted or expired while we generated: keep the turn in a new session
        for _ in range(3):  # a UUID v4 collision is vanishingly rare, but never merge sessions
            fresh = new_session_id()
            try:
                self.store.append(fresh, turns, create=True)
                return Exchange(fresh, reply, new_session=True)
            except ValueError:
                continue
        raise RuntimeError("could not find a free session id in three tries")
