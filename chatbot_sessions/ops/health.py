"""Probes and the scrape endpoint: /healthz (liveness), /readyz (Redis), /metrics.

These are plain Flask routes, outside the OpenAPI document: they are for orchestrators and
Prometheus, not API clients.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Response

from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.extensions import get_metrics, get_readiness
from chatbot_sessions.sessions.store import SessionStore

blp = Blueprint("ops", __name__)


class ReadinessProbe:
    """PINGs Redis within a time bound, with at most one PING in flight per process.

    The bound holds even when Redis hangs rather than refuses (the client's own timeouts
    and retries could take several seconds). Probes arriving while a PING is pending share
    it, so a hung Redis never piles up threads.
    """

    def __init__(self, store: SessionStore, timeout: float) -> None:
        self.store = store
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._pending: Future | None = None

    def check(self) -> None:
        """Return when Redis answered PING in time; raise StoreUnavailable otherwise."""
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = self._executor.submit(self.store.ping)
            pending = self._pending
        try:
            pending.result(timeout=self.timeout)
        except FutureTimeout:
            raise StoreUnavailable(f"PING got no answer within {self.timeout}s") from None


@blp.get("/healthz")
def healthz():
    """The process is up and serving; deliberately no Redis call (see /readyz)."""
    return {"success": True, "status": "ok"}


@blp.get("/readyz")
def readyz():
    """Redis answers PING within READINESS_TIMEOUT; else the 503 ``store_unavailable``."""
    started = time.perf_counter()
    get_readiness().check()
    elapsed_ms = (time.perf_counter() - started) * 1000
    return {"success": True, "status": "ready", "redisMs": round(elapsed_ms, 2)}


@blp.get("/metrics")
def metrics():
    """Prometheus exposition format (all workers' samples under gunicorn)."""
    body, content_type = get_metrics().render()
    return Response(body, content_type=content_type)
