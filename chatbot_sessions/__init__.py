"""chatbot-sessions: conversation memory for a RAG chatbot, as a Flask service on Redis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask

from chatbot_sessions.api import init_api
from chatbot_sessions.chat import ChatService
from chatbot_sessions.config import Settings, load_settings
from chatbot_sessions.errors import register_error_handlers
from chatbot_sessions.ops import init_operations
from chatbot_sessions.ops.logs import configure_logging
from chatbot_sessions.replies import build_generator
from chatbot_sessions.replies.base import ReplyGenerator
from chatbot_sessions.replies.cli import kb_cli
from chatbot_sessions.security import init_security
from chatbot_sessions.sessions import budget
from chatbot_sessions.sessions.connection import connect
from chatbot_sessions.sessions.store import SessionStore
from chatbot_sessions.widget import init_widget

__all__ = ["create_app"]


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
    app = Flask(__name__)
    # URLs match exactly: werkzeug would answer "/api//session/create" with a 308 redirect
    # whose body is HTML (Flask renders routing redirects itself, past our error handlers),
    # and which a client may follow without its body. A 404 names the client's mistake.
    # Rules take this when registered, so it is set before ours are.
    app.url_map.merge_slashes = False
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.json.sort_keys = False
    configure_logging(settings.log_level)  # first, so start-up warnings are JSON too

    client = redis_client if redis_client is not None else connect(settings)
    store = SessionStore(
        client,
        ttl=settings.session_ttl,
        max_messages=settings.max_messages_per_session,
        idempotency_ttl=settings.idempotency_ttl,
    )
    generator = reply_generator if reply_generator is not None else _default_generator(settings)
    app.extensions["redis"] = client
    app.extensions["session_store"] = store
    app.extensions["reply_generator"] = generator
    app.extensions["chat_service"] = ChatService(
        store,
        generator,
        settings.context_messages,
        # A keyed request holds its key while it may still be generating (LLM_TIMEOUT).
        idempotency_lease=settings.llm_timeout + 2,
        idempotency_wait=settings.idempotency_wait,
    )

    budget.init_app(app)
    init_api(app)
    init_widget(app, settings)
    register_error_handlers(app)
    app.cli.add_command(kb_cli)
    init_security(app, settings)
    init_operations(app, settings)
    return app


def _default_generator(settings: Settings) -> ReplyGenerator:
    """Retrieval over KNOWLEDGE_DIR (or the shipped docs), through the LLM when configured."""
    return build_generator(
        knowledge_dir=settings.knowledge_dir,
        llm_base_url=settings.llm_base_url,
        llm_api_key=settings.llm_api_key,
        llm_model=settings.llm_model,
        llm_timeout=settings.llm_timeout,
        llm_max_tokens=settings.llm_max_tokens,
        context_messages=settings.context_messages,
    )
