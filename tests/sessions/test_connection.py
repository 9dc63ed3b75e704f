"""The one redis-py client, built for the topology the settings chose."""

from __future__ import annotations

import pytest
from redis.exceptions import RedisClusterException
from redis.sentinel import SentinelConnectionPool

from chatbot_sessions.config import load_settings
from chatbot_sessions.sessions.connection import connect
from chatbot_sessions.sessions.lean_client import LeanRedis, LeanSentinelConnectionPool


def test_sentinel_client_asks_the_named_master_of_every_sentinel():
    settings = load_settings(
        environ={
            "REDIS_SENTINELS": "127.0.0.1:26379, [::1]:26380",
            "REDIS_SENTINEL_MASTER": "chat",
            "REDIS_SENTINEL_PASSWORD": "sp",
            "REDIS_PASSWORD": "rp",
            "REDIS_MAX_CONNECTIONS": "7",
        }
    )
    client = connect(settings)  # lazy: nothing is contacted yet
    pool = client.connection_pool
    assert isinstance(client, LeanRedis) and isinstance(pool, LeanSentinelConnectionPool)
    assert isinstance(pool, SentinelConnectionPool)  # redis-py's, with a leaner borrow
    assert pool.service_name == "chat" and pool.max_connections == 7
    assert pool.connection_kwargs["password"] == "rp"
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    assert all(s.connection_pool.connection_kwargs["password"] == "sp" for s in sentinels)


def test_cluster_client_needs_a_reachable_seed_at_start_up():
    settings = load_settings(
        environ={"REDIS_CLUSTER": "1", "REDIS_URL": "redis://127.0.0.1:1/0",
                 "REDIS_CONNECT_TIMEOUT": "0.2"}
    )  # fmt: skip
    # RedisCluster reads the slot map on construction: a dead seed fails right there (and
    # the worker exits, to be restarted), unlike the lazy single-server and Sentinel clients.
    with pytest.raises(RedisClusterException, match="cannot be connected"):
        connect(settings)


def test_the_client_never_retries_behind_the_stores_back():
    """redis-py's own retries are off: the store retries its scripts itself, knowing which
    are safe to run twice and whether it retried (see test_store_replays.py)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = connect(load_settings(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))
    retry = client.connection_pool.connection_kwargs["retry"]
    attempts = []

    def refused():
        attempts.append(1)
        raise RedisConnectionError("refused")

    with pytest.raises(RedisConnectionError):
        retry.call_with_retry(refused, lambda error: None)
    assert len(attempts) == 1
