"""Operations: probes, Prometheus metrics, JSON request logs and the ``flask sessions`` CLI.

``init_operations`` is the one call ``create_app`` makes; what it builds is registered in
the app's resources (``extensions.py``), so several apps in one process (tests) stay
independent.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

from flask import Flask, Response, request

from chatbot_sessions import extensions, signals
from chatbot_sessions.config import Settings
from chatbot_sessions.extensions import get_metrics
from chatbot_sessions.ops import logs
from chatbot_sessions.ops.cli import sessions_cli
from chatbot_sessions.ops.health import ReadinessProbe
from chatbot_sessions.ops.health import blp as health_blp
from chatbot_sessions.ops.metrics import UNMATCHED_ENDPOINT, Metrics

__all__ = ["init_operations"]

_STARTED = "chatbot_sessions.started"


class _StampStart:
    """WSGI middleware noting when a request arrived, before any other hook can answer it
    (so durations include rate limiting and the like)."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        environ[_STARTED] = time.perf_counter()
        return self.wsgi_app(environ, start_response)


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@lru_cache(maxsize=256)
def route_template(rule: str) -> str:
    """The rule as clients read it: ``<session:session_id>`` becomes ``<session_id>``."""
    return _CONVERTER.sub(r"<\1>", rule)


def _finish_request(response: Response) -> Response:
    """Return the request id, count and time the request, write its log line."""
    req = request._get_current_object()  # one context lookup, not one per attribute
    request_id = logs.request_id_of(req.environ)
    response.headers[logs.REQUEST_ID_HEADER] = request_id
    seconds = time.perf_counter() - req.environ.get(_STARTED, time.perf_counter())
    endpoint = route_template(req.url_rule.rule) if req.url_rule else UNMATCHED_ENDPOINT
    status = response.status_code
    get_metrics().observe_request(req.method, endpoint, status, seconds)
    logs.log_request(req, endpoint, status, seconds * 1000, request_id)
    return response


def init_operations(app: Flask, settings: Settings) -> None:
    """Attach probes, metrics, request logging and the admin CLI to ``app``."""
    resources = extensions.resources(app)
    store = extensions.get_required(resources.store, "store")
    chat = extensions.get_required(resources.chat, "chat")

    resources.metrics = metrics = Metrics()
    metrics.connect(store, chat, reloader=resources.reloader)
    resources.readiness = ReadinessProbe(store, settings.readiness_timeout)

    if settings.log_message_content:

        def _keep_content(_sender: object, question: str, reply: Any, **_: object) -> None:
            logs.remember_content(question, reply.text)

        # blinker holds receivers weakly: the app keeps this one alive as long as itself.
        resources.keep_alive.append(_keep_content)
        signals.reply_generated.connect(_keep_content, sender=chat)

    app.wsgi_app = _StampStart(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(_finish_request)
    app.register_blueprint(health_blp)
    app.cli.add_command(sessions_cli)
