"""Session resource: create, read history, validate, delete, rate an answer."""

from __future__ import annotations

from typing import Any

from chatbot_sessions.api.blueprint import Blueprint, MethodView
from chatbot_sessions.api.responses import errors
from chatbot_sessions.context import Context
from chatbot_sessions.domain import Feedback, SessionPage
from chatbot_sessions.extensions import get_chat, get_settings, get_store
from chatbot_sessions.schemas import (
    ClearedSchema,
    ContextSchema,
    CreatedSchema,
    FeedbackGivenSchema,
    FeedbackSchema,
    HistoryQuerySchema,
    HistorySchema,
    ValidSchema,
)
from chatbot_sessions.sessions.ids import new_session_id, parse_session_id

blp = Blueprint("sessions", __name__, url_prefix="/api/session", description="Chat sessions")


@blp.route("/create")
class CreateSession(MethodView):
    """POST /api/session/create: a new, empty session."""

    @blp.response(201, CreatedSchema)
    @errors(blp, 429, 503)
    def post(self) -> dict[str, Any]:
        """Start an empty session and return its id."""
        session_id = new_session_id()
        get_store().create(session_id)
        return {"session_id": session_id, "message": "Session created successfully"}


@blp.route("/<session:session_id>/history")
class SessionHistory(MethodView):
    """GET /api/session/<id>/history: the session's messages, a page at a time."""

    @blp.arguments(HistoryQuerySchema(), location="query", as_kwargs=True)
    @blp.response(200, HistorySchema)
    @errors(blp, 404, 503)
    def get(
        self, session_id: str, limit: int | None = None, before: int | None = None
    ) -> SessionPage:
        """Messages oldest first; ``limit`` keeps the newest N, ``before`` pages back."""
        page_max = get_settings().history_page_max
        return get_store().read(session_id, limit=min(limit or page_max, page_max), before=before)


@blp.route("/<session:session_id>/context")
class SessionContext(MethodView):
    """GET /api/session/<id>/context: the summary and turns the next reply would see."""

    @blp.response(200, ContextSchema)
    @errors(blp, 404, 503)
    def get(self, session_id: str) -> Context:
        """The rolling summary and the newest turns within CONTEXT_TOKENS (an access)."""
        return get_chat().context(session_id)


@blp.route("/<session:session_id>/validate")
class ValidateSession(MethodView):
    """GET /api/session/<id>/validate: whether a stored session id is still good."""

    @blp.response(200, ValidSchema)
    @errors(blp, 503)
    def get(self, session_id: str) -> dict[str, Any]:
        """Say whether the session exists (and keep it alive if it does)."""
        # A well-formed id comes back canonical (lower case); a malformed one as it was given.
        shown = parse_session_id(session_id) or session_id
        return {"valid": get_store().touch(session_id), "session_id": shown}


@blp.route("/<lone_session:session_id>")
class DeleteSession(MethodView):
    """DELETE /api/session/<id>: the session, its messages and its idempotency records."""

    @blp.response(200, ClearedSchema)
    @errors(blp, 404, 503)
    def delete(self, session_id: str) -> dict[str, Any]:
        """Delete the session and all its messages."""
        get_store().delete(session_id)
        return {"message": "Session cleared successfully"}


@blp.route("/<session:session_id>/messages/<message:message_id>/feedback")
class AnswerFeedback(MethodView):
    """POST /api/session/<id>/messages/<messageId>/feedback: rate an answer."""

    @blp.arguments(FeedbackSchema())
    @blp.response(200, FeedbackGivenSchema)
    @errors(blp, 400, 404, 413, 422, 429, 503)
    def post(self, body: dict[str, Any], session_id: str, message_id: str) -> Feedback:
        """Rate the answer ``message_id`` (its ``id`` in history) up or down, with an optional
        comment; a later rating of the same answer replaces this one."""
        return get_store().rate(session_id, message_id, body["rating"], body["comment"])
