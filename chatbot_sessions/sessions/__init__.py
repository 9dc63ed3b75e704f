"""Conversation memory on Redis: the session domain in one package.

- ``ids``: session ids, and the one gate client input passes through on its way to a key;
- ``keys``: the Redis key layout, its inverse, and the TTL rule;
- ``codec``: how messages and replies become Redis values and back;
- ``scripts``: every Lua script, each with its KEYS/ARGV contract;
- ``store``: the repository a request uses (one script per access, exactly-once writes);
- ``idempotency``: storing a chat turn exactly once, with or without an Idempotency-Key;
- ``admin``: operator scans, statistics, export/import and TTLs over the same keys;
- ``knowledge_versions``: the knowledge base's reload version and the workers' reports.

Nothing here knows HTTP (``init_app`` only registers the resources with the app);
``domain`` (below) holds the values it shares with the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatbot_sessions import extensions
from chatbot_sessions.config import Settings
from chatbot_sessions.sessions import budget
from chatbot_sessions.sessions.admin import SessionAdmin
from chatbot_sessions.sessions.connection import connect
from chatbot_sessions.sessions.knowledge_versions import KnowledgeVersions
from chatbot_sessions.sessions.store import SessionStore

if TYPE_CHECKING:
    import redis
    from flask import Flask


def init_app(app: Flask, settings: Settings, client: redis.Redis | None = None) -> SessionStore:
    """Connect to Redis (or use ``client``), and register the store, the admin commands,
    the knowledge base's reload versions, the per-request wait budget, and the closing of
    the connection pool with the app."""
    owned = client is None
    client = connect(settings) if client is None else client
    store = SessionStore(
        client,
        ttl=settings.session_ttl,
        max_messages=settings.max_messages_per_session,
        idempotency_ttl=settings.idempotency_ttl,
    )
    resources = extensions.resources(app)
    resources.redis, resources.store, resources.admin = client, store, SessionAdmin(store)
    resources.knowledge_versions = KnowledgeVersions(client)
    if owned:  # a client handed in (tests) belongs to whoever made it
        resources.on_close(client.close)
    budget.init_app(app)
    return store
