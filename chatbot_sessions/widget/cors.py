"""Cross-origin access to the API for pages on other sites that embed the widget.

Only the origins listed in ``CORS_ORIGINS`` get a grant; with none listed (the default) no
CORS headers are ever sent, so browsers keep the API same-origin. flask-cors does the
preflight and header work; we pin it to ``/api/``, to exact origins, and to the custom
headers the API speaks: ``session-id`` (sent and read) and ``Idempotency-Key`` (sent; the
widget's retries carry it), with ``Idempotent-Replayed`` readable on a replayed reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from flask import Flask, Response, request
from flask_cors import CORS

API_PATHS = r"/api/.*"
ALLOWED_HEADERS = ["Content-Type", "session-id", "Idempotency-Key"]
# Retry-After is not CORS-safelisted: without exposing it the widget could not honour it.
EXPOSED_HEADERS = ["session-id", "Retry-After", "Idempotent-Replayed"]
METHODS = ["GET", "POST", "DELETE", "OPTIONS"]
PREFLIGHT_MAX_AGE_SECONDS = 600


def init_cors(app: Flask, origins: Sequence[str]) -> None:
    """Grant ``origins`` (exact ``scheme://host[:port]``, or ``*``) access to ``/api/``."""
    if not origins:
        return
    CORS(
        app,
        resources={API_PATHS: {"origins": [_exactly(origin) for origin in origins]}},
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        methods=METHODS,
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
        supports_credentials=False,  # the session id travels in a header, never a cookie
        # flask-cors would otherwise list every allowed origin on requests without Origin.
        always_send=False,
    )
    app.after_request(_vary_on_origin)


def _exactly(origin: str) -> str | re.Pattern[str]:
    # flask-cors reads a string holding regex characters as a pattern, which would turn an
    # IPv6 origin such as http://[::1]:8000 into a character class; compile it literally.
    if origin == "*":
        return origin
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def _vary_on_origin(response: Response) -> Response:
    # The grant depends on the Origin header, so shared caches must key on it (flask-cors
    # only says so when several origins are configured).
    if request.path.startswith("/api/"):
        response.vary.add("Origin")
    return response
