"""Domain errors raised below the HTTP layer; ``errors.py`` maps each to a status once."""


class ChatSessionError(Exception):
    """Base class for the errors this service raises on purpose."""


class SessionNotFound(ChatSessionError):
    """The session id is malformed, unknown, expired or deleted."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class StoreUnavailable(ChatSessionError):
    """Redis could not be reached or answered with an error; the request may be retried."""
