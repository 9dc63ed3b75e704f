"""Domain errors raised below the HTTP layer; ``http_errors.py`` maps each to a status once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the reload's state is built a layer up (replies/)
    from chatbot_sessions.replies.reload_control import ReloadState, WorkerState


class ChatSessionError(Exception):
    """Base class for the errors this service raises on purpose."""


class SessionNotFound(ChatSessionError):
    """The session id is malformed, unknown, expired or deleted."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class MessageNotFound(ChatSessionError):
    """No message by that id is stored in the session: malformed, beyond the newest, or
    trimmed away."""

    def __init__(self, session_id: str, message_id: object) -> None:
        super().__init__(f"message {message_id!r} not found in session {session_id!r}")
        self.session_id = session_id
        self.message_id = message_id


class NotAnAnswer(ChatSessionError):
    """Feedback was given on a message that is not an answer (a user's question)."""

    def __init__(self, session_id: str, message_id: int) -> None:
        super().__init__(f"message {message_id} of session {session_id!r} is not an answer")
        self.session_id = session_id
        self.message_id = message_id


class StoreUnavailable(ChatSessionError):
    """Redis could not be reached or answered with an error; the request may be retried."""


class SessionIdTaken(ChatSessionError):
    """A new session's id already belongs to another session (a UUID v4 collision)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session id {session_id!r} is already taken")
        self.session_id = session_id


class AlreadyRecorded(ChatSessionError):
    """An idempotent append found its exchange already stored; nothing was stored again."""


class IdempotencyKeyReused(ChatSessionError):
    """The Idempotency-Key was already used for a different request."""


class IdempotencyInProgress(ChatSessionError):
    """A request with the same Idempotency-Key is still being answered."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"same Idempotency-Key in progress; retry in {retry_after}s")
        self.retry_after = retry_after


class RateLimited(ChatSessionError):
    """A client or session used up a rate limit (``limit``, e.g. "30 per 1 minute");
    ``retry_after`` is the whole seconds until that window resets."""

    def __init__(self, retry_after: int, limit: str) -> None:
        super().__init__(f"rate limit {limit} reached; retry in {retry_after}s")
        self.retry_after = retry_after
        self.limit = limit


class AdminTokenRequired(ChatSessionError):
    """An admin request came without the right ``Authorization: Bearer <ADMIN_TOKEN>``."""


class GenerationsBusy(ChatSessionError):
    """Every reply-writing slot of this worker is taken (MAX_GENERATIONS); retry shortly."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"all reply writers are busy; retry in {retry_after}s")
        self.retry_after = retry_after


class ReplyNotFound(ChatSessionError):
    """No streamed reply by that id in that session (never, or no longer: STREAM_RETENTION)."""


class KnowledgeReloadFailed(ChatSessionError):
    """A worker could not build the knowledge version asked for (it still serves its old
    index) and will not try that version again; ``failed`` names those workers."""

    def __init__(self, version: int, state: ReloadState, failed: Sequence[WorkerState]) -> None:
        reasons = "; ".join(f"{w.worker}: {w.failure}" for w in failed)
        super().__init__(f"rebuild failed on {reasons}")
        self.version = version
        self.state = state


class KnowledgeReloadTimedOut(ChatSessionError):
    """Not every live worker served the knowledge version asked for within ``timeout`` s;
    the reload stays requested, and slow workers still get there on their own."""

    def __init__(self, version: int, timeout: float, state: ReloadState) -> None:
        behind = ", ".join(w.worker for w in state.behind(version)) or "no worker reported"
        super().__init__(f"not every worker serves version {version} after {timeout:g}s: {behind}")
        self.version = version
        self.timeout = timeout
        self.state = state
