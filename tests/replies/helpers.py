"""Small builders shared by the reply tests (fixtures live in conftest.py)."""

from __future__ import annotations

from chatbot_sessions.domain import Message


def turns(*pairs: tuple[str, str]) -> list[Message]:
    """History messages from ``(type, content)`` pairs, oldest first."""
    return [
        Message(type=kind, content=content, timestamp=f"2026-01-01T00:00:{i:02d}Z")  # type: ignore[typeddict-item]
        for i, (kind, content) in enumerate(pairs)
    ]
