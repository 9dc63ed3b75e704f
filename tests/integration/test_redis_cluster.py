"""The whole API on a real three-master Redis Cluster, built from redis-server processes."""

from __future__ import annotations

import hashlib

import pytest
from redis.cluster import RedisCluster

from chatbot_sessions import create_app
from chatbot_sessions.extensions import resources
from chatbot_sessions.security.rate_limits import KEY_PREFIX
from chatbot_sessions.sessions import scripts
from chatbot_sessions.sessions.keys import idempotency_key, session_keys, writes_key
from tests.conftest import require
from tests.support.processes import RedisClusterServers, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.cluster]

SESSIONS = 30  # P(one of 3 masters gets none of 30 random sessions) = 3*(2/3)**30 ~ 1.6e-5


@pytest.fixture
def cluster(tmp_path):
    require(RedisServer.binary is not None, "redis-server is not installed")
    require(RedisClusterServers.cli is not None, "redis-cli is not installed")
    servers = RedisClusterServers(tmp_path / "cluster", masters=3).start()
    yield servers
    servers.stop()


@pytest.fixture
def cluster_app(cluster, generator):
    return create_app(
        {"REDIS_CLUSTER": "1", "REDIS_URL": cluster.seed_url, "RATE_LIMIT_ENABLED": "0"},
        reply_generator=generator,
    )


def owner_port(client: RedisCluster, key: str) -> int:
    return client.get_node_from_key(key).port


def sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def test_whole_api_on_a_cluster_keeps_each_session_in_one_slot(cluster, cluster_app):
    client = resources(cluster_app).redis
    assert isinstance(client, RedisCluster)
    http = cluster_app.test_client()

    created = []
    for n in range(SESSIONS):
        sid = http.post("/api/session/create").get_json()["sessionId"]
        reply = http.post(
            "/api/send-message", json={"question": f"q{n}"}, headers={"session-id": sid}
        )
        assert reply.status_code == 200 and reply.headers["session-id"] == sid
        created.append(sid)
    # a session started by send-message (no header) lands in the cluster the same way
    fresh = http.post("/api/send-message", json={"question": "new"}).get_json()["sessionId"]
    assert fresh not in created

    owners = set()
    for n, sid in enumerate(created):
        meta, messages, *_ = session_keys(sid)
        assert client.keyslot(meta) == client.keyslot(messages)  # the {id} hash tag
        node = client.get_node_from_key(meta)
        assert client.exists(meta, messages) == 2
        assert node.redis_connection.exists(meta, messages) == 2  # both on the owning master
        owners.add(node.port)
        history = http.get(f"/api/session/{sid}/history").get_json()["messages"]
        assert [m["content"] for m in history] == [f"q{n}", f"answer to: q{n}"]
        assert http.get(f"/api/session/{sid}/validate").get_json()["valid"] is True
    assert owners == {node.port for node in cluster.nodes}, "sessions should spread over masters"

    for sid in created[::2]:
        assert http.delete(f"/api/session/{sid}").status_code == 200
        assert client.exists(*session_keys(sid)) == 0
        assert http.get(f"/api/session/{sid}/validate").get_json()["valid"] is False
        assert http.get(f"/api/session/{sid}/history").status_code == 404
        assert http.delete(f"/api/session/{sid}").status_code == 404

    # SCAN on the cluster client visits every master (what admin counts rely on)
    scanned = set(client.scan_iter(match="chat_session:*", count=100))
    expected = {k for sid in [*created[1::2], fresh] for k in session_keys(sid)[:3]}  # unrated
    assert scanned == expected


def test_delete_removes_idempotency_records_across_hash_tags(cluster, cluster_app):
    """The session-less record lives in another slot than the session it started: the
    delete script removes the session's own records, a second command removes that one."""
    client = resources(cluster_app).redis
    http = cluster_app.test_client()
    deleted = []
    for n in range(SESSIONS // 3):  # enough sessions that some sit on another master
        started, inside = f"start-key-{n:08d}", f"inside-key-{n:08d}"
        sid = http.post(
            "/api/send-message", json={"question": "hi"}, headers={"Idempotency-Key": started}
        ).get_json()["sessionId"]
        reply = http.post(
            "/api/send-message",
            json={"question": "more"},
            headers={"session-id": sid, "Idempotency-Key": inside},
        )
        assert reply.status_code == 200
        sessionless = idempotency_key(started, None)
        assert client.hget(sessionless, "sid") == sid
        assert client.ttl(writes_key(sid)) > 0
        assert http.delete(f"/api/session/{sid}").status_code == 200
        assert not client.exists(sessionless)
        deleted.append((sid, started))
    assert any(
        owner_port(client, idempotency_key(key, None)) != owner_port(client, session_keys(sid)[0])
        for sid, key in deleted
    ), "some session-less record should live on another master than its session"
    assert list(client.scan_iter(match="chat_session:*", count=100)) == []
    sid, started = deleted[0]
    again = http.post(
        "/api/send-message", json={"question": "hi"}, headers={"Idempotency-Key": started}
    )
    assert again.status_code == 200 and again.headers["session-id"] != sid
    assert "Idempotent-Replayed" not in again.headers


def test_scripts_load_on_every_master_and_survive_a_script_flush(cluster, cluster_app):
    http = cluster_app.test_client()
    sids = [http.post("/api/session/create").get_json()["sessionId"] for _ in range(SESSIONS)]
    for sid in sids:
        http.post("/api/send-message", json={"question": "hi"}, headers={"session-id": sid})
    used = [sha(scripts.CREATE), sha(scripts.CONTEXT), sha(scripts.APPEND)]
    for node in cluster.nodes:
        # EVALSHA missed (NOSCRIPT) on first use; redis-py's Script loaded it on all masters
        assert node.client().script_exists(*used) == [True, True, True]

    for node in cluster.nodes:  # as after a restart without persistence of the script cache
        node.client().script_flush()
        assert node.client().script_exists(sha(scripts.TOUCH)) == [False]
    for sid in sids:
        assert http.get(f"/api/session/{sid}/validate").get_json()["valid"] is True
        response = http.post(
            "/api/send-message", json={"question": "again"}, headers={"session-id": sid}
        )
        assert response.status_code == 200
        assert len(http.get(f"/api/session/{sid}/history").get_json()["messages"]) == 4


def test_cluster_seeded_from_redis_host_and_port(cluster, generator):
    seed = cluster.nodes[-1]
    app = create_app(
        {
            "REDIS_CLUSTER": "true",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(seed.port),
            "RATE_LIMIT_ENABLED": "0",
        },
        reply_generator=generator,
    )
    client = resources(app).redis
    assert isinstance(client, RedisCluster)
    assert {n.port for n in client.get_primaries()} == {n.port for n in cluster.nodes}
    http = app.test_client()
    sid = http.post("/api/send-message", json={"question": "hello"}).get_json()["sessionId"]
    assert len(http.get(f"/api/session/{sid}/history").get_json()["messages"]) == 2


def test_a_dead_cluster_is_a_503_envelope_not_a_500(cluster, generator):
    app = create_app(
        {
            "REDIS_CLUSTER": "1",
            "REDIS_URL": cluster.seed_url,
            "REDIS_CONNECT_TIMEOUT": "0.3",
            "RATE_LIMIT_ENABLED": "0",
        },
        reply_generator=generator,
    )
    http = app.test_client()
    sid = http.post("/api/session/create").get_json()["sessionId"]
    cluster.stop()
    for response in (
        http.post("/api/session/create"),
        http.post("/api/send-message", json={"question": "x"}, headers={"session-id": sid}),
        http.get(f"/api/session/{sid}/history"),
        http.delete(f"/api/session/{sid}"),
    ):
        assert response.status_code == 503
        assert response.get_json()["error"] == "store_unavailable"
        assert response.headers["Retry-After"] == "1"


def test_rate_limit_counters_live_in_the_cluster_whichever_way_it_is_seeded(cluster, generator):
    """Seeded from REDIS_URL or from REDIS_HOST/PORT, the limiter reaches the same cluster."""
    limits = {"REDIS_CLUSTER": "1", "RATE_LIMIT_ENABLED": "1", "RATE_LIMIT_CREATE": "3/hour"}
    by_url = create_app({**limits, "REDIS_URL": cluster.seed_url}, reply_generator=generator)
    seed = cluster.nodes[-1]
    by_host = create_app(
        {**limits, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(seed.port)},
        reply_generator=generator,
    )
    for app in (by_url, by_host):
        assert resources(app).limiter.client is resources(app).redis
    clients = [by_url.test_client(), by_host.test_client()]
    remote = {"environ_base": {"REMOTE_ADDR": "10.9.8.7"}}
    statuses = [clients[n % 2].post("/api/session/create", **remote).status_code for n in range(5)]
    assert statuses == [201, 201, 201, 429, 429]  # one budget, shared through the cluster
    counters = list(resources(by_url).redis.scan_iter(match=f"{KEY_PREFIX}*", count=100))
    digest = hashlib.sha256(b"10.9.8.7").hexdigest()[:32]  # addresses reach keys only hashed
    assert counters and all(digest in key and "10.9.8.7" not in key for key in counters)


def test_a_send_counts_its_ip_and_its_session_in_their_own_slots(cluster, generator):
    """The IP's and the session's counters are in different slots: one script call each."""
    app = create_app(
        {"REDIS_CLUSTER": "1", "REDIS_URL": cluster.seed_url, "RATE_LIMIT_ENABLED": "1",
         "RATE_LIMIT_SEND_SESSION": "2/minute"},
        reply_generator=generator,
    )  # fmt: skip
    client = app.test_client()
    sid = client.post("/api/session/create").get_json()["sessionId"]
    statuses = [
        client.post("/api/send-message", json={"question": "q"}, headers={"session-id": sid})
        for _ in range(3)
    ]
    assert [response.status_code for response in statuses] == [200, 200, 429]
    redis_client = resources(app).redis
    counters = {key: redis_client.get(key) for key in redis_client.scan_iter(f"{KEY_PREFIX}*")}
    # Counted in the cluster (a failed call would have been counted in memory instead).
    assert sorted(counters.values()) == ["1", "3", "3"]  # create; send per IP; per session
    assert not any(sid in key for key in counters)


def test_a_streamed_reply_lives_in_its_sessions_slot_and_resumes(cluster, cluster_app):
    """Events, stop requests and the resume read all stay in the session's hash slot."""
    from tests.support.streams import Event, parse_events

    http = cluster_app.test_client()
    client = resources(cluster_app).redis
    streamed = http.post(
        "/api/send-message", json={"question": "hi"}, headers={"Accept": "text/event-stream"}
    )
    events = [e for e in parse_events([streamed.data]) if isinstance(e, Event)]
    assert events[0].name == "start" and events[-1].name == "done"
    sid, reply_id = events[0].data["sessionId"], events[0].data["replyId"]
    stream_key = f"chat_session:{{{sid}}}:reply:{reply_id}"
    assert client.keyslot(stream_key) == client.keyslot(session_keys(sid)[0])
    assert client.exists(stream_key) == 1
    resumed = http.get(f"/api/session/{sid}/replies/{reply_id}/events?after=1")
    rest = [e for e in parse_events([resumed.data]) if isinstance(e, Event)]
    assert rest[0].id == 2 and rest[-1].data["reply"] == events[-1].data["reply"]
    assert http.delete(f"/api/session/{sid}").status_code == 200
    assert client.exists(stream_key) == 0
