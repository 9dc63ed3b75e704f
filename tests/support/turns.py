"""Chat turns to append in store tests."""

from __future__ import annotations

from chatbot_sessions.domain import NewMessage
from chatbot_sessions.timestamps import now_ms


def turns(text: str) -> list[NewMessage]:
    """A question and its answer (``re: <text>``), said now."""
    at = now_ms()
    return [NewMessage("user", text, at), NewMessage("assistant", f"re: {text}", at + 1)]
