"""chatbot-sessions: conversation memory for a RAG chatbot, as a Flask service on Redis."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis
from flask import Flask, Request
from flask.sessions import NullSession, SecureCookieSessionInterface

from chatbot_sessions import chat, extensions, replies, sessions
from chatbot_sessions.api import init_api
from chatbot_sessions.config import Settings, load_settings
from chatbot_sessions.http_errors import register_error_handlers
from chatbot_sessions.json_provider import OrjsonProvider
from chatbot_sessions.ops import init_operations
from chatbot_sessions.ops.logs import configure_logging
from chatbot_sessions.replies.base import ReplyGenerator
from chatbot_sessions.security import init_security
from chatbot_sessions.widget import init_widget

__all__ = ["create_app"]


class _SealedNullSession(NullSession):
    """Flask's null session, refusing ``|=`` too: werkzeug's ``UpdateDictMixin`` gained
    ``__ior__`` after Flask listed the writes its null session refuses, and a write to
    the one shared instance would reach every later request (found in review)."""

    __ior__ = NullSession.__setitem__


class _SharedNullSession(SecureCookieSessionInterface):
    """Flask's cookie sessions, with one null session for every request while there is no
    ``SECRET_KEY``.

    The service keeps nothing in Flask's cookie session (its sessions live in Redis, named
    by a header or the path) and sets no secret key, so Flask gives every request a null
    session: one that refuses every write. Flask makes a new one per request (about 9,000
    instructions); since it can hold nothing, one serves them all. With a secret key
    set, sessions are Flask's own.
    """

    _null = _SealedNullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession | None:
        if app.secret_key:
            return super().open_session(app, request)
        return self._null


class ServiceFlask(Flask):
    """Flask with orjson for JSON and without per-request steps nothing here needs."""

    json_provider_class = OrjsonProvider
    session_interface = _SharedNullSession()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known_sync: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer, remembered for plain functions.

        Flask asks of every hook and view, on every request, whether it is a coroutine
        function (``inspect`` work, about twenty times per send-message counting
        flask-smorest's wrappers); a function's answer never changes. Bound methods are
        remembered by their function, and the memory is bounded in case a caller makes
        new functions per request.
        """
        key = getattr(func, "__func__", func)
        if key in self._known_sync:
            return func
        answer = super().ensure_sync(func)
        if answer is func and len(self._known_sync) < 4096:
            self._known_sync.add(key)
        return answer


def create_app(
    config: Mapping[str, Any] | Settings | None = None,
    *,
    redis_client: redis.Redis | None = None,
    reply_generator: ReplyGenerator | None = None,
) -> Flask:
    """Build the app: settings (env + ``config`` overrides), Redis, generator, blueprints.

    ``config`` uses the environment variable names (``{"SESSION_TTL": 5}``). Tests may
    inject an existing Redis client or generator instead of having them built here.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = ServiceFlask(__name__)
    # URLs match exactly: werkzeug would answer "/api//session/create" with a 308 redirect
    # whose body is HTML (Flask renders routing redirects itself, past our error handlers),
    # and which a client may follow without its body. A 404 names the client's mistake.
    # Rules take this when registered, so it is set before ours are.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    configure_logging(settings.log_level)  # first, so start-up warnings are JSON too

    # Each part registers its resources, their closing and its CLI; order matters only
    # where a part uses another's resource (the chat service uses store and generator).
    extensions.install(app, settings)
    sessions.init_app(app, settings, client=redis_client)
    replies.init_app(app, settings, generator=reply_generator)
    chat.init_app(app, settings)
    init_api(app)
    init_widget(app, settings)
    register_error_handlers(app)
    init_security(app, settings)
    init_operations(app, settings)
    return app
