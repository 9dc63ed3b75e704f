"""At maxmemory with noeviction, what operators are told in docs/operations.md holds."""

from __future__ import annotations

import pytest

from chatbot_sessions import create_app
from tests.conftest import require
from tests.support.processes import RedisServer

pytestmark = [pytest.mark.redis]


def test_noeviction_limit_refuses_writes_with_503_but_reads_and_deletes_work(tmp_path, generator):
    require(RedisServer.binary is not None, "redis-server is not installed")
    server = RedisServer(tmp_path / "redis").start()  # our own: its config is changed below
    try:
        app = create_app(
            {"REDIS_URL": server.url, "RATE_LIMIT_ENABLED": "0"}, reply_generator=generator
        )
        http = app.test_client()
        sid = http.post("/api/send-message", json={"question": "hi"}).get_json()["sessionId"]
        admin = server.client()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", admin.info("memory")["used_memory"] - 1000)

        for response in (
            http.post("/api/session/create"),
            http.post("/api/send-message", json={"question": "x"}, headers={"session-id": sid}),
        ):
            assert response.status_code == 503
            assert response.get_json()["error"] == "store_unavailable"
        history = http.get(f"/api/session/{sid}/history")
        assert history.status_code == 200 and len(history.get_json()["messages"]) == 2
        assert http.get(f"/api/session/{sid}/validate").get_json()["valid"] is True
        assert http.delete(f"/api/session/{sid}").status_code == 200  # frees memory
    finally:
        server.stop()
