"""Chat turns: POST /api/send-message."""

from __future__ import annotations

from typing import Any

from flask import Response

from chatbot_sessions.api.blueprint import Blueprint, MethodView
from chatbot_sessions.api.responses import REPLAYED_HEADER, SESSION_ID_HEADER, errors
from chatbot_sessions.api.streams import stream_ticket, wants_stream
from chatbot_sessions.domain import Exchange
from chatbot_sessions.extensions import get_chat
from chatbot_sessions.schemas import ReplySchema, SendMessageSchema, SessionHeaderSchema

blp = Blueprint("messages", __name__, url_prefix="/api", description="Chat turns")


@blp.route("/send-message")
class SendMessage(MethodView):
    """POST /api/send-message: one chat turn, question and reply stored together."""

    @blp.arguments(SessionHeaderSchema(), location="headers", as_kwargs=True)
    @blp.arguments(SendMessageSchema())
    @blp.response(200, ReplySchema, headers={**SESSION_ID_HEADER, **REPLAYED_HEADER})
    @errors(blp, 400, 409, 413, 429, 503)
    def post(
        self,
        body: dict[str, Any],
        session_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Exchange, int, dict[str, str]] | Response:
        """Answer a question; a missing or unknown ``session-id`` header starts a new session.

        With ``Accept: text/event-stream`` the answer is streamed as Server-Sent Events
        (``start``, ``delta``..., ``done``; see ``api/streams.py``) while it is written.
        """
        if wants_stream():
            ticket = get_chat().start_stream(session_id, body["question"], idempotency_key)
            return stream_ticket(ticket)
        exchange = get_chat().send(session_id, body["question"], idempotency_key)
        headers = {"session-id": exchange.session_id}
        if exchange.replayed:
            headers["Idempotent-Replayed"] = "true"
        return exchange, 200, headers
