"""Operations: probes, Prometheus metrics, JSON request logs and the ``flask sessions`` CLI.

``init_operations`` is the one call ``create_app`` makes; what it builds is registered in
the app's resources (``extensions.py``), so several apps in one process (tests) stay
independent.
"""

from __future__ import annotations

import logging
import re
import time
from functools import lru_cache
from typing import Any

from flask import Flask, Request

from chatbot_sessions import extensions, signals
from chatbot_sessions.config import Settings
from chatbot_sessions.ops import logs
from chatbot_sessions.ops.cli import sessions_cli
from chatbot_sessions.ops.health import ReadinessProbe
from chatbot_sessions.ops.health import blp as health_blp
from chatbot_sessions.ops.metrics import UNMATCHED_ENDPOINT, Metrics

__all__ = ["init_operations"]

log = logging.getLogger(__name__)

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@lru_cache(maxsize=256)
def route_template(rule: str) -> str:
    """The rule as clients read it: ``<session:session_id>`` becomes ``<session_id>``."""
    return _CONVERTER.sub(r"<\1>", rule)


class RequestRecorder:
    """WSGI middleware: every request's id header, its metrics and its log line.

    The clock starts when the request arrives, before any hook can answer it (durations
    include rate limiting and the like), and stops when the response starts: for a streamed
    reply, when its first byte is ready. At the WSGI level the response is a status line and
    a list of header pairs, and the request the one werkzeug keeps in the environ; as an
    ``after_request`` hook the same work went through Flask's hook machinery, werkzeug's
    ``Headers`` and the request proxy (about 25,000 instructions of a validate's 900,000).
    """

    def __init__(self, wsgi_app: Any, metrics: Metrics) -> None:
        self.wsgi_app = wsgi_app
        self.metrics = metrics

    def __call__(self, environ: dict, start_response: Any) -> Any:
        started = time.perf_counter()
        recorded = False

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal recorded
            request_id = logs.request_id_of(environ)
            headers.append((logs.REQUEST_ID_HEADER, request_id))
            if not recorded:  # a second start (with exc_info) replaces the answer, not a request
                recorded = True
                try:
                    seconds = time.perf_counter() - started
                    self._record(environ, int(status[:3]), seconds, request_id)
                except Exception:  # the answer is on its way: a bookkeeping bug must not stop it
                    log.exception("could not record the request")
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)

    def _record(self, environ: dict, status: int, seconds: float, request_id: str) -> None:
        # Flask made this request object and left it in the environ, matched route and all.
        req = environ.get("werkzeug.request") or Request(environ, populate_request=False)
        rule = req.url_rule
        endpoint = route_template(rule.rule) if rule is not None else UNMATCHED_ENDPOINT
        self.metrics.observe_request(req.method, endpoint, status, seconds)
        logs.log_request(req, endpoint, status, seconds * 1000, request_id)


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

    app.wsgi_app = RequestRecorder(app.wsgi_app, metrics)  # type: ignore[method-assign]
    app.register_blueprint(health_blp)
    app.cli.add_command(sessions_cli)
