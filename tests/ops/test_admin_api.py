"""GET /api/admin/stats: bearer-token gate, then counts, TTL buckets and Redis memory."""

from __future__ import annotations

import pytest

from chatbot_sessions.sessions.keys import session_keys
from tests.ops.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def admin_client(make_app):
    return make_app({"ADMIN_TOKEN": ADMIN_TOKEN}).test_client()


def test_no_token_configured_means_the_endpoint_does_not_exist(client):
    unknown = client.get("/api/admin/nothing-here").get_json()
    for headers in ({}, AUTH):
        response = client.get("/api/admin/stats", headers=headers)
        assert response.status_code == 404
        assert response.get_json() == unknown  # indistinguishable from an unknown URL


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer ünïcode"},
    ],
)
def test_missing_or_wrong_token_is_401(admin_client, headers):
    response = admin_client.get("/api/admin/stats", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["success"] is False and body["error"] == "unauthorized"


def test_token_comparison_is_constant_time(admin_client, monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert admin_client.get("/api/admin/stats", headers=AUTH).status_code == 200
    assert calls == [1]


def _seed(app, client, n_live: int) -> list[str]:
    sids = [client.post("/api/session/create").get_json()["sessionId"] for _ in range(n_live)]
    client.post("/api/send-message", json={"question": "q"}, headers={"session-id": sids[0]})
    return sids


def test_stats_on_the_embedded_store(make_app, fake_redis):
    app = make_app({"ADMIN_TOKEN": ADMIN_TOKEN, "SESSION_TTL": "3600"})
    client = app.test_client()
    sids = _seed(app, client, 4)
    fake_redis.expire(session_keys(sids[1])[0], 30)
    fake_redis.persist(session_keys(sids[2])[0])
    fake_redis.set("unrelated", "x")
    body = client.get("/api/admin/stats", headers=AUTH).get_json()
    assert body["success"] is True
    assert body["activeSessions"] == 4  # messages keys and foreign keys are not sessions
    assert body["persistentSessions"] == 1
    buckets = {b["le"]: b["count"] for b in body["ttlBuckets"]}
    assert buckets[60] == 1 and buckets[3600] == 2 and sum(buckets.values()) == 3
    assert list(buckets)[-1] is None
    assert body["scanMs"] >= 0
    # fakeredis has no INFO: the stats still answer, saying why memory is missing.
    assert body["memory"]["usedMemory"] is None and "info" in body["memory"]["error"].lower()


@pytest.mark.redis
def test_stats_on_real_redis(make_app, private_redis):
    app = make_app({"ADMIN_TOKEN": ADMIN_TOKEN, "SESSION_TTL": "86400"}, client=private_redis)
    client = app.test_client()
    sids = _seed(app, client, 3)
    private_redis.expire(session_keys(sids[1])[0], 200)
    body = client.get("/api/admin/stats", headers=AUTH).get_json()
    assert body["activeSessions"] == 3 and body["persistentSessions"] == 0
    buckets = {b["le"]: b["count"] for b in body["ttlBuckets"]}
    assert buckets[300] == 1 and buckets[86400] == 2
    memory = body["memory"]
    assert memory["usedMemory"] > 0
    (node,) = memory["nodes"].values()
    assert node["used_memory"] == memory["usedMemory"] and node["maxmemory_policy"]


@pytest.mark.redis
def test_the_cli_prints_the_same_stats_document(make_app, private_redis):
    import json

    app = make_app({"ADMIN_TOKEN": ADMIN_TOKEN, "SESSION_TTL": "86400"}, client=private_redis)
    _seed(app, app.test_client(), 2)
    api = app.test_client().get("/api/admin/stats", headers=AUTH).get_json()
    printed = app.test_cli_runner().invoke(args=["sessions", "stats"])
    cli = json.loads(printed.stdout)
    assert set(cli) == set(api) and cli["activeSessions"] == api["activeSessions"] == 2
    assert (
        cli["ttlBuckets"] == api["ttlBuckets"]
        and cli["memory"]["nodes"].keys() == api["memory"]["nodes"].keys()
    )


def test_stats_503_when_redis_is_down(make_app, redis_down):
    client = make_app({"ADMIN_TOKEN": ADMIN_TOKEN}).test_client()
    response = client.get("/api/admin/stats", headers=AUTH)
    assert response.status_code == 503 and response.get_json()["error"] == "store_unavailable"


def test_stats_never_uses_keys(make_app, fake_redis, monkeypatch):
    client = make_app({"ADMIN_TOKEN": ADMIN_TOKEN}).test_client()
    client.post("/api/session/create")

    def forbidden(*args, **kwargs):
        raise AssertionError("KEYS must never be used")

    monkeypatch.setattr(fake_redis, "keys", forbidden)
    assert client.get("/api/admin/stats", headers=AUTH).get_json()["activeSessions"] == 1
