"""Redis stalled (``SIGSTOP``) with rate limits on: every request answers 503 within one wait.

A stopped Redis still accepts connections (the kernel completes the handshake) but never
answers, so every call waits out ``REDIS_SOCKET_TIMEOUT``. A request makes several calls
(the rate limits, then the store), and the rule of ``sessions/budget.py`` is that it waits once:
the 503 must arrive within about one timeout, not one per call.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
import requests

from tests.support.processes import GunicornServer

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.slow]

SOCKET_TIMEOUT = 1.0
# One timeout plus HTTP, gunicorn and the app; a second timeout would overshoot it.
BOUND = 1.5
RECOVERY = 1.0


@pytest.fixture
def service(tmp_path, own_redis):
    server = GunicornServer(
        {
            "REDIS_URL": own_redis.url,
            "REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT),
            "REDIS_CONNECT_TIMEOUT": str(SOCKET_TIMEOUT),
            "RATE_LIMIT_ENABLED": "1",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
        },
        tmp_path,
    ).start()
    yield server
    server.stop()


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_every_endpoint_answers_503_within_one_timeout_while_redis_is_stopped(service, own_redis):
    base = service.base_url
    http = requests.Session()
    sid = http.post(f"{base}/api/session/create", timeout=5).json()["sessionId"]
    in_session = {"session-id": sid}
    assert http.post(
        f"{base}/api/send-message", json={"question": "hi"}, headers=in_session, timeout=5
    ).ok
    requests_to_make = {
        "create": lambda: http.post(f"{base}/api/session/create", timeout=5),
        "send, no session": lambda: http.post(
            f"{base}/api/send-message", json={"question": "q"}, timeout=5
        ),
        "send, in session": lambda: http.post(
            f"{base}/api/send-message", json={"question": "q"}, headers=in_session, timeout=5
        ),
        "history": lambda: http.get(f"{base}/api/session/{sid}/history", timeout=5),
        "validate": lambda: http.get(f"{base}/api/session/{sid}/validate", timeout=5),
        "delete": lambda: http.delete(f"{base}/api/session/{sid}", timeout=5),
    }

    answers: dict[str, tuple[requests.Response, float]] = {}
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        for name, call in requests_to_make.items():
            answers[name] = timed(call)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    served = None
    while served is None and time.monotonic() - resumed_at < RECOVERY + 2:
        response = http.post(f"{base}/api/session/create", timeout=5)
        if response.status_code == 201:
            served = time.monotonic() - resumed_at
    http.close()

    for name, (response, elapsed) in answers.items():
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert response.json()["error"] == "store_unavailable", name
        assert elapsed <= BOUND, (name, elapsed)
    assert served is not None and served <= RECOVERY, served
