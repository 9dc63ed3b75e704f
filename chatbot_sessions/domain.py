"""Value types every layer shares, at the bottom of the import graph.

Storage (``sessions/``) and reply generation (``replies/``) sit side by side above this
module and never import each other; the chat flow and the views above them pass these
values between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

#: The ``format`` of an exported session document (``flask sessions export``).
SESSION_DOCUMENT_FORMAT = "chatbot-sessions/session-v1"


@dataclass(frozen=True)
class LimitCounter:
    """One rate-limit counter a request increments (``security/rate_limits.py`` makes them;
    the store counts them in the script of the request's session access)."""

    key: str
    #: The window in seconds, and how many hits it allows.
    window: int
    amount: int
    #: The rate as people read it ("30 per 1 minute"), for the 429's message.
    rate: str


#: The ratings a user can give an answer.
RATINGS = ("up", "down")


class MessageFeedback(TypedDict):
    """A rating as history shows it on the rated answer; ``comment`` is None without one."""

    rating: Literal["up", "down"]
    comment: str | None


class Message(TypedDict):
    """One stored message, in the wire shape of the API (timestamp is ISO 8601 UTC)."""

    #: Its absolute position: the n-th message ever appended to the session, from 0. Stable
    #: while messages are appended and trimmed; the paging cursor counts the same way.
    id: int
    type: Literal["user", "assistant"]
    content: str
    timestamp: str
    sources: NotRequired[list[dict[str, Any]]]
    #: Present (true) on an answer whose writing the user stopped: the text so far.
    stopped: NotRequired[bool]
    #: Present (true) on an answer the generator fell back to (``Reply.degraded``).
    degraded: NotRequired[bool]
    #: Present on an answer the user rated: the latest rating.
    feedback: NotRequired[MessageFeedback]


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
    #: The user stopped it mid-way; ``text`` is what was written until then.
    stopped: bool = False


@dataclass(frozen=True)
class NewMessage:
    """A message about to be appended; ``at_ms`` is when it was said (epoch ms)."""

    type: Literal["user", "assistant"]
    content: str
    at_ms: int
    sources: Sequence[Source] = ()
    stopped: bool = False
    #: An answer from a fallback (``Reply.degraded``), kept so ratings can be told apart.
    degraded: bool = False


@dataclass(frozen=True)
class Feedback:
    """A rating stored on an answer: which one (``message_id``, its absolute position)."""

    session_id: str
    message_id: int
    rating: Literal["up", "down"]
    comment: str | None = None


@dataclass(frozen=True)
class SessionPage:
    """A session's metadata and one page of its messages, oldest first."""

    session_id: str
    created_at: str
    last_activity: str
    messages: list[Message] = field(default_factory=list)
    next_cursor: int | None = None


@dataclass(frozen=True)
class Exchange:
    """The outcome of a turn: which session holds it and the reply.

    ``replayed`` marks a reply returned again for a retried Idempotency-Key.
    """

    session_id: str
    reply: Reply
    replayed: bool = False
    #: The answer's message id (its absolute position, as in history), to rate it by; None
    #: when unknown (a record or write-log entry written before they kept the id).
    message_id: int | None = None


class RatedAnswer(TypedDict):
    """A rated answer as ``flask sessions feedback`` writes it (one JSON line each): the
    rating, the answer and the question before it (None once trimmed away); ``at`` is when
    the rating was given (ISO 8601 UTC)."""

    sessionId: str
    messageId: int
    rating: str
    comment: str | None
    question: str | None
    answer: str | None
    sources: list[dict[str, Any]]
    degraded: bool
    at: str


class SessionDocument(TypedDict):
    """A whole session as ``flask sessions export`` writes it and ``import`` reads it."""

    format: str
    sessionId: str
    createdAt: str
    lastActivity: str
    seq: int
    ttlMs: int | None
    messages: list[Message]
