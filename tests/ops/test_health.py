"""Liveness and readiness: /healthz never touches Redis, /readyz answers within its bound."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.ops.health import ReadinessProbe
from tests.support.threads import run_in_threads


def test_healthz_is_ok_and_sends_no_redis_command(make_app, redis_down):
    client = make_app().test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "status": "ok"}
    assert b"chatbot_redis_errors_total{" not in client.get("/metrics").data
    assert client.get("/readyz").status_code == 503  # Redis really is down


def test_readyz_ok_when_redis_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["status"] == "ready" and body["redisMs"] >= 0


def test_readyz_503_envelope_when_redis_refuses(make_app, redis_down):
    client = make_app().test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["success"] is False and body["error"] == "store_unavailable"
    assert set(body) == {"success", "error", "message", "details"}
    assert 'chatbot_redis_errors_total{error="ConnectionError"} 1.0' in client.get(
        "/metrics"
    ).get_data(as_text=True)


@pytest.fixture
def silent_server():
    """A loopback TCP port that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def test_readyz_gives_up_at_its_bound_when_redis_hangs(make_app, silent_server):
    hung = redis.Redis(port=silent_server, socket_timeout=5, socket_connect_timeout=5)
    client = make_app({"READINESS_TIMEOUT": "0.3"}, client=hung).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503 and response.get_json()["error"] == "store_unavailable"
    assert 0.25 <= elapsed < 2, elapsed  # the bound, not the client's 5 s timeout
    assert client.get("/healthz").status_code == 200  # liveness is unaffected


class _BlockingStore:
    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def ping(self) -> bool:
        self.calls += 1
        self.release.wait(5)
        return True


def test_concurrent_probes_share_one_pending_ping():
    store = _BlockingStore()
    probe = ReadinessProbe(store, timeout=0.2)
    failures = []

    def check() -> None:
        try:
            probe.check()
        except StoreUnavailable as exc:
            failures.append(exc)

    run_in_threads(check, 6, timeout=5)
    assert len(failures) == 6 and store.calls == 1
    store.release.set()
    time.sleep(0.05)  # let the pending PING finish (it returns at once now)
    probe.check()  # a finished PING is not reused: a fresh one is sent and answers
    assert store.calls == 2
