"""Request rate limits: per client IP on the two writing endpoints, per session on chat turns.

flask-limiter was picked because it speaks Redis through the ``limits`` library (one
``INCR``+``EXPIRE`` script per limit and request with the fixed-window strategy) and plugs
into Flask's request cycle, so the views stay unaware of it.

Counters live in the same Redis as the sessions: ``redis_client.limiter_storage`` (beside
the code that connects the sessions' client) picks the storage for each topology.

If the counter storage fails, requests are not refused and never turn into a 500: the limiter
falls back to per-process in-memory counters (same limits, checked against Redis again with
backoff) and, failing that too, logs and lets the request through; the session store then
answers for itself (503 when Redis is really down).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded

from chatbot_sessions.config import Settings
from chatbot_sessions.errors import error_response
from chatbot_sessions.redis_client import limiter_storage
from chatbot_sessions.sessions.ids import parse_session_id

log = logging.getLogger(__name__)

KEY_PREFIX = "chatbot_sessions"


def client_ip() -> str:
    """The caller's address as the WSGI server (or a trusted proxy, see proxy.py) saw it."""
    return request.remote_addr or "unknown"


def ip_key() -> str:
    """Counter key for per-IP limits."""
    return f"ip:{client_ip()}"


def session_key() -> str:
    """Counter key for per-session limits: the canonical ``session-id``, else the IP.

    Only a canonical UUID v4 becomes part of a key; a missing or malformed header (which
    starts a new session) is counted against the caller's address instead.
    """
    session_id = parse_session_id(request.headers.get("session-id"))
    return f"session:{session_id}" if session_id else f"session-ip:{client_ip()}"


# endpoint -> [(Settings attribute holding the limit string, counter key function)]
LIMITS: dict[str, list[tuple[str, Callable[[], str]]]] = {
    "sessions.CreateSession": [("rate_limit_create", ip_key)],
    "messages.SendMessage": [
        ("rate_limit_send_ip", ip_key),
        ("rate_limit_send_session", session_key),
    ],
}


def _retry_after_seconds(limiter: Limiter, exc: RateLimitExceeded) -> int:
    """Whole seconds until the breached window resets (its full length if unknown)."""
    try:
        breached = limiter.current_limit
        if breached is not None:
            reset_at, _remaining = breached.window
            return max(1, math.ceil(reset_at - time.time()))
    except Exception:  # the storage may have failed between the hit and this lookup
        log.warning("could not read the rate limit window; sending its full length")
    return max(1, int(exc.limit.limit.get_expiry()))


def _rate_limited(exc: RateLimitExceeded) -> Response:
    limiter: Limiter = current_app.extensions["rate_limiter"]
    seconds = _retry_after_seconds(limiter, exc)
    return error_response(
        429,
        "rate_limited",
        f"Too many requests; retry in {seconds} s.",
        {"limit": str(exc.limit.limit), "retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )


def init_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Attach the limiter and wrap the limited views; nothing at all when disabled."""
    if not settings.rate_limit_enabled:
        return None
    uri, options = limiter_storage(app.extensions["redis"], settings)
    limiter = Limiter(
        key_func=ip_key,
        storage_uri=uri,
        storage_options=options,
        strategy="fixed-window",
        key_prefix=KEY_PREFIX,
        headers_enabled=False,  # X-RateLimit-* would cost two more Redis calls per request
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    # Every limit here is a route decorator, which checks itself. With no default or
    # application-wide limits, the extension's global before_request hook decides nothing
    # and only costs time on every other request (history, validate, probes): measured at
    # about 30 us per request in-process, so it is taken out.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    for endpoint, limits in LIMITS.items():
        view = app.view_functions[endpoint]  # KeyError here: a limited view was renamed
        for setting, key_func in limits:
            view = limiter.limit(getattr(settings, setting), key_func=key_func)(view)
        app.view_functions[endpoint] = view
    app.extensions["rate_limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter
