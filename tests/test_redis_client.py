"""Redis topology settings are checked at start-up; the client matches the topology chosen."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from redis.exceptions import RedisClusterException
from redis.sentinel import SentinelConnectionPool

from chatbot_sessions.config import ConfigError, load_settings, parse_host_port
from chatbot_sessions.redis_client import connect
from tests.support.processes import REPO_ROOT


def test_sentinels_without_a_master_name_stop_start_up_naming_the_variable():
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        load_settings(environ={"REDIS_SENTINELS": "127.0.0.1:26379"})


@pytest.mark.parametrize("entry", ["sentinel-host", "host:", ":26379", "host:port", "a b:1"])
def test_sentinel_entries_must_be_host_port(entry):
    with pytest.raises(ConfigError, match=r"REDIS_SENTINELS.*host:port"):
        load_settings(environ={"REDIS_SENTINELS": entry, "REDIS_SENTINEL_MASTER": "m"})


def test_sentinel_and_cluster_are_exclusive_and_cluster_has_only_db_0():
    with pytest.raises(ConfigError, match="REDIS_CLUSTER"):
        load_settings(
            environ={"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_CLUSTER": "1"}
        )
    with pytest.raises(ConfigError, match="REDIS_DB"):
        load_settings(environ={"REDIS_CLUSTER": "1", "REDIS_DB": "3"})


def test_sentinel_password_is_never_echoed():
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"REDIS_SENTINELS": "x", "REDIS_SENTINEL_PASSWORD": "s3cret"})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [("10.0.0.5:26379", ("10.0.0.5", 26379)), ("[::1]:26380", ("::1", 26380)),
     ("sentinel-0.svc:5000", ("sentinel-0.svc", 5000))],
)  # fmt: skip
def test_parse_host_port(entry, expected):
    assert parse_host_port(entry) == expected


def test_port_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        parse_host_port("h:70000")


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
    assert isinstance(client, redis.Redis) and isinstance(pool, SentinelConnectionPool)
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


def test_gunicorn_master_refuses_to_start_with_sentinels_but_no_master_name():
    env = {"PATH": "/usr/bin:/bin", "REDIS_SENTINELS": "127.0.0.1:26379", "PORT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config", "wsgi:app"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "REDIS_SENTINEL_MASTER" in result.stdout + result.stderr


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
