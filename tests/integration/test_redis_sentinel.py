"""Sentinel failover under real gunicorn: the master dies, the service follows the promotion."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests

from chatbot_sessions.sessions import scripts
from tests.conftest import require
from tests.support.processes import GunicornServer, RedisServer, SentinelSet, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.gunicorn, pytest.mark.slow]

FAILOVER_BOUND = 30  # seconds; sentinel here is tuned to ~0.5 s detection


@pytest.fixture
def sentinel_set(tmp_path):
    require(RedisServer.binary is not None, "redis-server is not installed")
    servers = SentinelSet(tmp_path / "sentinel", sentinels=3).start()
    yield servers
    servers.stop()


@pytest.fixture
def service(sentinel_set, tmp_path):
    server = GunicornServer(
        {
            "REDIS_SENTINELS": sentinel_set.sentinel_addresses,
            "REDIS_SENTINEL_MASTER": sentinel_set.master_name,
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "4",
        },
        tmp_path,
    ).start()
    yield server
    server.stop()


def send(base: str, sid: str | None, question: str) -> requests.Response:
    headers = {"session-id": sid} if sid else {}
    return requests.post(
        f"{base}/api/send-message", json={"question": question}, headers=headers, timeout=10
    )


def test_service_follows_a_failover_without_restart(sentinel_set, service):
    base = service.base_url
    sid = send(base, None, "before").json()["sessionId"]
    assert len(requests.get(f"{base}/api/session/{sid}/history", timeout=5).json()["messages"]) == 2
    # the exchange must reach the replica before the crash, or it is legitimately lost
    assert sentinel_set.master.client().wait(1, 5000) >= 1
    script_shas = [hashlib.sha1(s.encode()).hexdigest() for s in (scripts.READ, scripts.APPEND)]
    # Redis 7 does not replicate the script cache: the promoted replica will answer NOSCRIPT
    assert sentinel_set.replica.client().script_exists(*script_shas) == [False, False]

    killed_at = time.monotonic()
    sentinel_set.master.kill()
    statuses: list[int] = []

    def serving_again() -> bool:
        response = send(base, sid, "after")
        statuses.append(response.status_code)
        assert response.headers["Content-Type"].startswith("application/json")
        return response.status_code == 200

    wait_until(serving_again, FAILOVER_BOUND, interval=0.2, what="service answering after failover")
    recovered_in = time.monotonic() - killed_at
    assert set(statuses) <= {200, 503}, f"only 503 while the master is gone: {statuses}"
    assert sentinel_set.master_port() == sentinel_set.replica.port
    assert recovered_in < FAILOVER_BOUND
    print(f"failover: served again {recovered_in:.2f}s after SIGKILL, {len(statuses)} tries")

    # same session, same process: the data replicated before the crash is all there
    history = requests.get(f"{base}/api/session/{sid}/history", timeout=5).json()["messages"]
    assert [m["content"] for m in history[::2]] == ["before", "after"]
    assert sentinel_set.replica.client().script_exists(*script_shas) == [True, True]

    # every worker has moved over: a burst across both workers all succeeds
    burst = [send(base, sid, f"burst{i}").status_code for i in range(20)]
    assert burst == [200] * 20
    fresh = requests.post(f"{base}/api/session/create", timeout=5)
    assert fresh.status_code == 201
    assert sentinel_set.replica.client().exists(f"chat_session:{{{fresh.json()['sessionId']}}}")
