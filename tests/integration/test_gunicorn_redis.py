"""The real thing: gunicorn workers over a real Redis, driven over HTTP on loopback."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from chatbot_sessions.sessions.keys import session_keys

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn]


def test_sixteen_threads_on_one_session_lose_and_reorder_nothing(gunicorn_server):
    server = gunicorn_server(WEB_CONCURRENCY="2", GUNICORN_THREADS="8")
    sid = requests.post(f"{server.base_url}/api/session/create", timeout=10).json()["sessionId"]

    def worker(t: int) -> list[int]:
        statuses = []
        with requests.Session() as http:
            for i in range(25):
                response = http.post(
                    f"{server.base_url}/api/send-message",
                    json={"question": f"t{t}-{i}"},
                    headers={"session-id": sid},
                    timeout=30,
                )
                statuses.append(response.status_code)
                assert response.json()["sessionId"] == sid
        return statuses

    with ThreadPoolExecutor(16) as pool:
        statuses = [s for result in pool.map(worker, range(16)) for s in result]
    assert statuses == [200] * 400

    messages = requests.get(f"{server.base_url}/api/session/{sid}/history", timeout=10).json()[
        "messages"
    ]
    assert len(messages) == 800
    users, assistants = messages[::2], messages[1::2]
    assert all(m["type"] == "user" for m in users) and all(
        m["type"] == "assistant" for m in assistants
    )
    for user, assistant in zip(users, assistants, strict=True):
        assert user["timestamp"] <= assistant["timestamp"]  # each answer right after its question
    for t in range(16):
        mine = [int(m["content"].split("-")[1]) for m in users if m["content"].startswith(f"t{t}-")]
        assert mine == list(range(25)), f"thread {t} lost or reordered: {mine}"


def test_session_expires_after_ttl_and_access_extends_it(gunicorn_server, real_redis):
    server = gunicorn_server(SESSION_TTL="2")
    base = server.base_url
    sid = requests.post(f"{base}/api/session/create", timeout=5).json()["sessionId"]
    requests.post(
        f"{base}/api/send-message", json={"question": "hi"}, headers={"session-id": sid}, timeout=10
    )
    present = [k for k in session_keys(sid) if real_redis.exists(k)]  # no feedback key yet
    assert len(present) == 3 and all(0 < real_redis.ttl(k) <= 2 for k in present)
    for _ in range(3):  # 3 s of regular access keeps a 2 s session alive
        time.sleep(1)
        assert requests.get(f"{base}/api/session/{sid}/validate", timeout=5).json()["valid"] is True
    time.sleep(2.5)
    assert real_redis.exists(*session_keys(sid)) == 0
    assert requests.get(f"{base}/api/session/{sid}/history", timeout=5).status_code == 404
    assert requests.get(f"{base}/api/session/{sid}/validate", timeout=5).json()["valid"] is False


def test_trimming_at_the_maximum_through_http(gunicorn_server, real_redis):
    server = gunicorn_server(MAX_MESSAGES_PER_SESSION="10")
    base = server.base_url
    sid = None
    for n in range(8):
        headers = {"session-id": sid} if sid else {}
        sid = requests.post(
            f"{base}/api/send-message", json={"question": f"q{n}"}, headers=headers, timeout=10
        ).json()["sessionId"]
    messages = requests.get(f"{base}/api/session/{sid}/history", timeout=5).json()["messages"]
    assert [m["content"] for m in messages[::2]] == ["q3", "q4", "q5", "q6", "q7"]
    assert real_redis.llen(session_keys(sid)[1]) == 10
