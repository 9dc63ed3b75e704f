"""Accessors for the per-app resources built in ``create_app`` (no module-level globals)."""

from __future__ import annotations

from flask import current_app

from chatbot_sessions.chat import ChatService
from chatbot_sessions.config import Settings
from chatbot_sessions.sessions.admin import SessionAdmin
from chatbot_sessions.sessions.store import SessionStore


def get_settings() -> Settings:
    """The validated settings of the current app."""
    return current_app.config["SETTINGS"]


def get_store() -> SessionStore:
    """The session repository of the current app."""
    return current_app.extensions["session_store"]


def get_chat() -> ChatService:
    """The chat-turn service of the current app."""
    return current_app.extensions["chat_service"]


def get_admin() -> SessionAdmin:
    """The operator commands (scans, stats, export/import) of the current app."""
    return current_app.extensions["session_admin"]
