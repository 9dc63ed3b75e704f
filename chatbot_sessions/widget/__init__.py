"""The browser chat: the page at ``/``, and ``widget.js`` that any site can embed.

Everything the browser needs ships as static files in this package (plain JavaScript and
CSS, no build step). The page holds no inline script or style, so it runs under a strict
Content-Security-Policy. ``init_widget`` also opens the API to the embedding origins.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, send_from_directory

from chatbot_sessions.config import Settings
from chatbot_sessions.widget.cors import init_cors

STATIC_DIR = "static"
# Short enough that a deploy reaches embedding sites within minutes; ETags make
# revalidation cheap in between.
ASSET_MAX_AGE_SECONDS = 300

blp = Blueprint("widget", __name__, static_folder=None)


@blp.get("/")
def chat_page() -> Response:
    """The full-page chat."""
    response = send_from_directory(blp.root_path + "/" + STATIC_DIR, "chat.html", max_age=0)
    response.cache_control.no_cache = True
    return response


@blp.get("/<any('widget.js', 'widget.css', 'chat-page.css'):filename>")
def asset(filename: str) -> Response:
    """The widget's script and styles, at stable URLs for embedding sites."""
    return send_from_directory(
        blp.root_path + "/" + STATIC_DIR, filename, max_age=ASSET_MAX_AGE_SECONDS
    )


def init_widget(app: Flask, settings: Settings) -> None:
    """Serve the chat page and widget files, and grant ``CORS_ORIGINS`` access to the API."""
    app.register_blueprint(blp)
    init_cors(app, settings.cors_origins)
