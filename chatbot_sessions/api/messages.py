"""Chat turns: POST /api/send-message."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from chatbot_sessions.api.docs import SESSION_ID_HEADER, errors
from chatbot_sessions.extensions import get_chat
from chatbot_sessions.schemas import ReplySchema, SendMessageSchema, SessionHeaderSchema

blp = Blueprint("messages", __name__, url_prefix="/api", description="Chat turns")


@blp.route("/send-message")
class SendMessage(MethodView):
    @blp.arguments(SessionHeaderSchema(), location="headers", as_kwargs=True)
    @blp.arguments(SendMessageSchema())
    @blp.response(200, ReplySchema, headers=SESSION_ID_HEADER)
    @errors(blp, 400, 413, 429, 503)
    def post(self, body: dict, session_id: str | None = None):
        """Answer a question; a missing or unknown ``session-id`` header starts a new session."""
        exchange = get_chat().send(session_id, body["question"])
        reply = exchange.reply
        result = {
            "reply": reply.text,
            "sessionID": exchange.session_id,
            "sessionId": exchange.session_id,
            "sources": list(reply.sources),
            "degraded": reply.degraded,
        }
        return result, 200, {"session-id": exchange.session_id}
