"""The app as the in-process browser tests serve it: over real Redis, with a reply generator
the test controls, under a strict Content-Security-Policy (no inline script or style), so
every such test also proves the widget needs nothing inline."""

from __future__ import annotations

from flask import Flask

from chatbot_sessions import create_app

STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def app_with_csp(redis_url: str, generator, **config: str) -> Flask:
    """The app on ``redis_url`` answering with ``generator``, every response under the CSP;
    ``config`` adds settings (``CORS_ORIGINS=...``)."""
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "RATE_LIMIT_ENABLED": "0",
            "REDIS_SOCKET_TIMEOUT": "1",
            **config,
        },
        reply_generator=generator,
    )

    @app.after_request
    def _csp(response):
        response.headers["Content-Security-Policy"] = STRICT_CSP
        return response

    return app
