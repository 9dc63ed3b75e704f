"""The app as the in-process browser tests serve it: over real Redis, with a reply generator
the test controls, under a strict Content-Security-Policy (no inline script or style), so
every such test also proves the widget needs nothing inline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


@contextmanager
def embedded_widget(page, workdir: Path, redis_url: str, generator) -> Iterator[Embedded]:
    """The widget embedded by one <script> tag on a site of another origin, opened and
    ready: the API grants that origin CORS, and the page is under the strict CSP."""
    from tests.support.web import serve_static, serve_wsgi
    from tests.widget.chat_ui import ChatUI

    with serve_static(workdir / "site", {}) as site:
        app = app_with_csp(redis_url, generator, CORS_ORIGINS=site)
        with serve_wsgi(app) as api:
            (workdir / "site" / "index.html").write_text(
                f'<!doctype html><title>Shop</title><script src="{api}/widget.js" defer></script>'
            )
            page.goto(f"{site}/index.html")
            page.get_by_role("button", name="Open Chat").click()
            ui = ChatUI(page, api)
            ui.wait_ready()
            yield Embedded(site, api, ui)


@dataclass(frozen=True)
class Embedded:
    """Where the embedding site and the API run, and the widget's UI handle."""

    site: str
    api: str
    ui: object
