"""The HTTP API: flask-smorest blueprints whose schemas also produce the OpenAPI document."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from chatbot_sessions.errors import http_exception_response
from chatbot_sessions.schemas import ErrorSchema


class ChatApi(Api):
    """flask-smorest's Api, documenting and emitting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return http_exception_response(error)


def init_api(app: Flask) -> ChatApi:
    """Attach the API and its blueprints to ``app``."""
    from chatbot_sessions.api.admin import init_admin_api
    from chatbot_sessions.api.messages import blp as messages_blp
    from chatbot_sessions.api.sessions import blp as sessions_blp

    app.config.setdefault("API_TITLE", "chatbot-sessions")
    app.config.setdefault("API_VERSION", "1.0")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    api = ChatApi(app)
    api.register_blueprint(sessions_blp)
    api.register_blueprint(messages_blp)
    init_admin_api(api)
    return api
