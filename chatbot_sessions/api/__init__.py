"""The HTTP API: flask-smorest blueprints whose schemas also produce the OpenAPI document.

The document is served at ``/api/openapi.json`` and rendered by ReDoc at ``/api/docs``. ReDoc
was picked over Swagger UI because its page needs no inline script, so even the docs page
keeps a CSP without ``'unsafe-inline'`` scripts (see ``security/headers.py``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_smorest import Api
from marshmallow import fields
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from chatbot_sessions.config import Settings
from chatbot_sessions.extensions import resources
from chatbot_sessions.http_errors import http_exception_response
from chatbot_sessions.schemas import ErrorSchema

# Pinned, so the docs page cannot change under us; the CSP of /api/docs allows this origin.
REDOC_URL = "https://cdn.jsdelivr.net/npm/redoc@2.5.4/bundles/redoc.standalone.js"


class ChatApi(Api):
    """flask-smorest's Api, documenting and emitting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each view lists its error statuses (api/responses.py), so
    # a status the document does not name is a contract failure, not silently "documented".
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Response:
        """Render Flask's, werkzeug's and webargs' HTTP errors in our JSON envelope."""
        return http_exception_response(error)


class SessionSegment(BaseConverter):
    """A session id in a path: any one segment.

    The id itself is checked by ``session_ids.parse_session_id`` (a malformed one is simply
    not found). ``part_isolating`` is said outright because werkzeug reads a ``/`` in the
    regex (here inside ``[^/]``) as "may span segments", and for such a converter its
    matcher tried each session route's whole remaining path in turn, one regex per route:
    about 40,000 instructions a request, now one regex per segment.
    """

    regex = r"[^/]+"
    part_isolating = True


class LoneSessionSegment(SessionSegment):
    """The session id of ``/api/session/<id>`` (DELETE): any one segment except ``create``,
    so that ``/api/session/create`` does not also match the DELETE route (OPTIONS there
    would advertise a DELETE). Deeper paths take ``create`` as an id like any other."""

    regex = r"(?!create$)[^/]+"
    part_isolating = True


class MessageSegment(BaseConverter):
    """A message id in a path: any one segment. ``ids.parse_message_id`` checks it (a
    malformed one is simply not found, as the JSON envelope says, not an unknown route)."""

    regex = r"[^/]+"
    part_isolating = True  # as SessionSegment


#: How the document shows a message id: what ``ids.parse_message_id`` accepts.
MESSAGE_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 10**15 - 1}


def _limits_from_settings(settings: Settings):
    """An apispec attribute function: ``metadata={"max_length_setting": name}`` -> maxLength."""

    def setting_limits(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
        name = field.metadata.get("max_length_setting")
        return {"maxLength": getattr(settings, name)} if name else {}

    return setting_limits


def init_api(app: Flask) -> ChatApi:
    """Attach the API, its blueprints and its OpenAPI document to ``app``."""
    from chatbot_sessions.api.admin import init_admin_api
    from chatbot_sessions.api.messages import blp as messages_blp
    from chatbot_sessions.api.sessions import blp as sessions_blp
    from chatbot_sessions.api.streams import blp as streams_blp

    app.config.setdefault("API_TITLE", "chatbot-sessions")
    app.config.setdefault("API_VERSION", "1.0")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_REDOC_PATH", "docs")
    app.config.setdefault("OPENAPI_REDOC_URL", REDOC_URL)
    app.url_map.converters["session"] = SessionSegment
    app.url_map.converters["lone_session"] = LoneSessionSegment
    app.url_map.converters["message"] = MessageSegment
    api = ChatApi(app)
    # LoneSessionSegment too: flask-smorest looks a converter up along its class's MRO.
    api.register_converter(SessionSegment, lambda converter: {"type": "string", "minLength": 1})
    api.register_converter(MessageSegment, lambda converter: dict(MESSAGE_ID_SCHEMA))
    api.ma_plugin.converter.add_attribute_function(_limits_from_settings(resources(app).settings))
    api.register_blueprint(sessions_blp)
    api.register_blueprint(messages_blp)
    api.register_blueprint(streams_blp)
    init_admin_api(api)
    return api
