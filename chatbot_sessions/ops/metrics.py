"""Prometheus metrics (prometheus-client), correct with one process or many.

Under gunicorn every worker is a separate process, and a scrape reaches just one of them.
With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets it up before any worker
starts), each worker writes its samples to files there and ``/metrics`` adds up the files
of every worker, live or dead, so counters stay monotonic across worker restarts. Without
the variable (tests, ``flask run``) each app keeps its own in-memory registry.

Labels are bounded: the endpoint label is the route template, never the raw path (which
holds session ids), and unmatched paths share one value; any method outside the standard
ones a client may send is counted as ``OTHER``.

The one gauge, ``chatbot_knowledge_version``, is per worker, not a sum: in multiprocess mode
it is ``liveall`` (a ``pid`` label each; ``child_exit`` in gunicorn.conf.py drops a dead
worker's file), so ``min(chatbot_knowledge_version)`` is the oldest version still served.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from chatbot_sessions import signals
from chatbot_sessions.chat import ChatService
from chatbot_sessions.domain import RATINGS, Reply
from chatbot_sessions.replies.reloading import KnowledgeReloader
from chatbot_sessions.sessions.store import SessionStore

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ENDPOINT = "<unmatched>"
#: Method label values; any other method (a client can send ``FOO``) is ``OTHER``, so no
#: client can create series at will.
KNOWN_METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})
OTHER_METHOD = "OTHER"
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Reply generation may wait on an LLM: wider buckets than plain HTTP.
_REPLY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)


def multiprocess_dir() -> str | None:
    """The directory worker processes share samples through, or None (per-process mode)."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The service's metrics, registered in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "endpoint", "status")
        self.requests = Counter(
            "chatbot_http_requests",
            "HTTP requests served, by route template and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "chatbot_http_request_duration_seconds",
            "Time to produce the response, by route template and status.",
            labels,
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        # (method, endpoint, status) -> its counter and histogram; every part is bounded
        # (see the module docstring), so this is too. labels() looks up and locks per call.
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.sessions_created = Counter(
            "chatbot_sessions_created", "Sessions created.", registry=self.registry
        )
        self.messages_stored = Counter(
            "chatbot_messages_stored",
            "Messages appended to sessions (questions and replies).",
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "chatbot_redis_errors",
            "Redis commands that failed, by redis-py exception type.",
            ("error",),
            registry=self.registry,
        )
        self.reply_latency = Histogram(
            "chatbot_reply_generation_seconds",
            "Time the reply generator took; outcome=degraded when it fell back.",
            ("outcome",),
            buckets=_REPLY_BUCKETS,
            registry=self.registry,
        )
        self.feedback = Counter(
            "chatbot_feedback",
            "Answers rated, by rating (up/down) and whether the rated answer was degraded.",
            ("rating", "degraded"),
            registry=self.registry,
        )
        for rating in RATINGS:  # all four series from the start, so rates never lack a zero
            for degraded in ("false", "true"):
                self.feedback.labels(rating, degraded)
        #: Made by the first ``knowledge_served`` (``_on_knowledge_served``), not here.
        self.knowledge_version: Gauge | None = None
        self._gauge_lock = threading.Lock()
        if multiprocess_dir() and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client picks its storage once, when first imported.
            log.warning(
                "%s is set but prometheus_client was imported before it was: metrics are "
                "per process and /metrics shows one worker's share",
                MULTIPROC_ENV,
            )

    def connect(
        self, store: SessionStore, chat: ChatService, reloader: KnowledgeReloader | None = None
    ) -> None:
        """Count the domain events of this app's store and chat service, and show the
        knowledge version its ``reloader`` serves (None: the generator is not reloadable)."""
        if reloader is not None:
            signals.knowledge_served.connect(self._on_knowledge_served, sender=reloader)
        signals.session_created.connect(self._on_session_created, sender=store)
        signals.messages_stored.connect(self._on_messages_stored, sender=store)
        signals.store_error.connect(self._on_store_error, sender=store)
        signals.reply_generated.connect(self._on_reply_generated, sender=chat)
        signals.feedback_given.connect(self._on_feedback_given, sender=store)

    def _on_session_created(self, _sender: object) -> None:
        self.sessions_created.inc()

    def _on_messages_stored(self, _sender: object, count: int) -> None:
        self.messages_stored.inc(count)

    def _on_store_error(self, _sender: object, error: Exception) -> None:
        self.redis_errors.labels(type(error).__name__).inc()

    def _on_reply_generated(self, _sender: object, seconds: float, reply: Reply, **_: object):
        self.reply_latency.labels("degraded" if reply.degraded else "ok").observe(seconds)

    def _on_feedback_given(self, _sender: object, rating: str, degraded: bool) -> None:
        self.feedback.labels(rating, "true" if degraded else "false").inc()

    def _on_knowledge_served(self, _sender: object, version: int) -> None:
        with self._gauge_lock:
            if self.knowledge_version is None:
                # Made once the process serves, not with the app: `flask` commands build the
                # app too, and in multiprocess mode a gauge writes its file as soon as it
                # exists; nothing marks a command's pid dead, so its 0 would stay forever.
                self.knowledge_version = Gauge(
                    "chatbot_knowledge_version",
                    "The knowledge-base version this worker serves (flask kb reload and "
                    "POST /api/admin/kb/reload raise it).",
                    multiprocess_mode="liveall",
                    registry=self.registry,
                )
        self.knowledge_version.set(version)

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Record one served request."""
        key = (method if method in KNOWN_METHODS else OTHER_METHOD, endpoint, status)
        series = self._request_series.get(key)
        if series is None:  # first time for these labels: look the children up once
            labels = (key[0], endpoint, str(status))
            series = self.requests.labels(*labels), self.latency.labels(*labels)
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, across all workers when multiprocess."""
        path = multiprocess_dir()
        if path:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=path)
        else:
            registry = self.registry
        return generate_latest(registry), CONTENT_TYPE_LATEST
