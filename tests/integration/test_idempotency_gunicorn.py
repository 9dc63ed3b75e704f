"""Concurrent duplicates of one keyed request, across gunicorn workers on a real Redis."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn]


def fire(base: str, n: int, question: str, headers: dict) -> list[requests.Response]:
    """Send ``n`` identical requests as simultaneously as threads allow."""
    barrier = threading.Barrier(n)

    def one(_: int) -> requests.Response:
        barrier.wait(10)
        return requests.post(
            f"{base}/api/send-message", json={"question": question}, headers=headers, timeout=30
        )

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_duplicates_store_exactly_one_exchange(gunicorn_server, real_redis):
    server = gunicorn_server(WEB_CONCURRENCY="2", GUNICORN_THREADS="8")
    base = server.base_url
    sid = requests.post(f"{base}/api/session/create", timeout=10).json()["sessionId"]
    for round_ in range(5):
        for session in (sid, None):
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            if session:
                headers["session-id"] = session
            responses = fire(base, 12, f"q{round_}-{bool(session)}", headers)
            assert [r.status_code for r in responses] == [200] * 12
            bodies = {r.text for r in responses}
            assert len(bodies) == 1, bodies  # everyone got the one original reply
            assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
            got = responses[0].json()["sessionId"]
            if session:
                assert got == sid
            history = requests.get(f"{base}/api/session/{got}/history", timeout=10).json()
            contents = [m["content"] for m in history["messages"]]
            assert contents.count(f"q{round_}-{bool(session)}") == 1
    sessions = [k for k in real_redis.scan_iter("chat_session:{*}") if k.endswith("}")]
    assert len(sessions) == 1 + 5  # the shared one, and one per session-less round
