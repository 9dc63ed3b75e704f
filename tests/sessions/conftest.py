"""The store most session tests use: short TTLs, a small message cap, a 60 s key window."""

from __future__ import annotations

import pytest

from chatbot_sessions.sessions.store import SessionStore


@pytest.fixture
def store(redis_client) -> SessionStore:
    return SessionStore(redis_client, ttl=300, max_messages=50, idempotency_ttl=60)
