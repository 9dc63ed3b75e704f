"""A stand-in generator that answers by quoting the question: no knowledge, no network.

Used where a deterministic, dependency-free generator is wanted (benchmarks of the store
path, tests of the chat flow); the service's default is the retrieval generator.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatbot_sessions.replies.base import Message, Reply


class EchoGenerator:
    """Replies ``You said: <question>`` and counts the turns it was given as context."""

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        """Quote the question back; deterministic and instant."""
        return Reply(text=f"You said: {question} (context: {len(history)} messages)")
