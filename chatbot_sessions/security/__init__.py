"""Abuse limits and browser-facing hardening, attached to the app in one call.

- ``proxy``: the client address comes from ``X-Forwarded-For`` only behind trusted proxies;
- ``body_limit``: MAX_CONTENT_LENGTH also for chunked bodies that declare no length;
- ``rate_limits``: per-IP and per-session request limits (fixed windows in Redis);
- ``headers``: nosniff, referrer, frame and content-security policies on every response.

The threat model these serve is written up in ``docs/security.md``.
"""

from __future__ import annotations

from flask import Flask

from chatbot_sessions.config import Settings
from chatbot_sessions.security.body_limit import init_body_limit
from chatbot_sessions.security.headers import init_security_headers
from chatbot_sessions.security.proxy import init_proxy_fix
from chatbot_sessions.security.rate_limits import init_rate_limits

__all__ = ["init_security"]


def init_security(app: Flask, settings: Settings) -> None:
    """Install proxy handling, rate limits and security headers; call after the API exists."""
    init_proxy_fix(app, settings)
    init_body_limit(app)
    init_rate_limits(app, settings)
    init_security_headers(app)
