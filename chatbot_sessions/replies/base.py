"""The contract between the chat flow and whatever writes the replies.

The session service only needs "question + recent history -> reply (+ sources)";
keeping that behind one small protocol lets the retrieval generator, an LLM-backed
one and the tests' fakes be swapped without touching views or the store.

Streamed replies (SSE to the browser) use the same contract one delta at a time:
``stream()`` returns a ``ReplyStream`` whose deltas join into the reply text, so a
whole reply is just a stream read to the end (``collect``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from chatbot_sessions.domain import Message, Reply, Source


class ReplyGenerator(Protocol):
    """Anything that answers a question given the session's recent history (oldest first)."""

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        """Return the reply to ``question``; must not raise for ordinary failures."""
        ...


class ReplyStream(Protocol):
    """A reply being written: iterate for text deltas, in order; sources are known up front.

    After the iteration ends the reply is ``Reply("".join(deltas), sources, degraded)``;
    after ``close()``, the same with the deltas received so far.
    """

    #: Set before the first delta (retrieval runs first) and never changed afterwards.
    sources: Sequence[Source]
    #: May become True while streaming (the LLM failed and a fallback wrote the rest).
    degraded: bool

    def __iter__(self) -> Iterator[str]:
        """Non-empty text deltas; ``"".join(deltas)`` is the reply text. Single use."""
        ...

    def close(self) -> None:
        """Stop early (user pressed Stop, or shutdown) and release the HTTP response.

        Idempotent, and safe to call from another thread than the one iterating: the
        iteration then ends without further deltas.
        """
        ...


class StreamingReplyGenerator(ReplyGenerator, Protocol):
    """A generator that can also hand its reply over while writing it."""

    def stream(self, question: str, history: Sequence[Message]) -> ReplyStream:
        """The reply to ``question`` as a stream; must not raise for ordinary failures."""
        ...


def collect(stream: ReplyStream) -> Reply:
    """Read ``stream`` to the end and return the reply it wrote (what ``generate`` returns)."""
    try:
        text = "".join(stream)
    finally:
        stream.close()
    return Reply(text=text, sources=tuple(stream.sources), degraded=stream.degraded)


class TextStream:
    """A ``ReplyStream`` over deltas already known: an answer that needs no waiting.

    Streaming it anyway gives the widget one code path for every kind of reply.
    """

    def __init__(
        self, deltas: Iterable[str], sources: Sequence[Source] = (), *, degraded: bool = False
    ) -> None:
        self.sources = tuple(sources)
        self.degraded = degraded
        self._deltas = [d for d in deltas if d]
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        for delta in self._deltas:
            if self._closed:
                return
            yield delta

    def close(self) -> None:
        """Stop handing out deltas."""
        self._closed = True
