"""Value types shared across layers, at the bottom of the import graph."""

from __future__ import annotations

from dataclasses import dataclass

from chatbot_sessions.replies.base import Reply


@dataclass(frozen=True)
class Exchange:
    """The outcome of a turn: which session holds it and the reply.

    ``replayed`` marks a reply returned again for a retried Idempotency-Key.
    """

    session_id: str
    reply: Reply
    replayed: bool = False
