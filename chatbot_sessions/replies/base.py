"""The contract between the chat flow and whatever writes the replies.

The session service only needs "question + recent history -> reply (+ sources)";
keeping that behind one small protocol lets the retrieval generator, an LLM-backed
one and the tests' fakes be swapped without touching views or the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict


class Message(TypedDict):
    """One stored turn, in the seed's wire shape (timestamp is ISO 8601 UTC)."""

    type: Literal["user", "assistant"]
    content: str
    timestamp: str


@dataclass(frozen=True)
class Source:
    """Where part of a reply came from: a document title, its path or URL, a score."""

    title: str
    source: str
    score: float


@dataclass(frozen=True)
class Reply:
    """A generated answer; ``degraded`` marks a fallback used because the LLM failed."""

    text: str
    sources: Sequence[Source] = field(default_factory=tuple)
    degraded: bool = False


class ReplyGenerator(Protocol):
    """Anything that answers a question given the session's recent history (oldest first)."""

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        """Return the reply to ``question``; must not raise for ordinary failures."""
        ...
