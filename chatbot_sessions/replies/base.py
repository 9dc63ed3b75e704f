"""The contract between the chat flow and whatever writes the replies.

The session service only needs "question + recent history -> reply (+ sources)";
keeping that behind one small protocol lets the retrieval generator, an LLM-backed
one and the tests' fakes be swapped without touching views or the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatbot_sessions.domain import Message, Reply


class ReplyGenerator(Protocol):
    """Anything that answers a question given the session's recent history (oldest first)."""

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        """Return the reply to ``question``; must not raise for ordinary failures."""
        ...
