"""Fixtures for the operations tests: a Redis of our own, JSON log capture, admin apps."""

from __future__ import annotations

import json

import pytest

from tests.conftest import require
from tests.support.processes import RedisServer

ADMIN_TOKEN = "s3cret-admin-token"


@pytest.fixture(scope="module")
def private_redis_server(tmp_path_factory):
    """A redis-server only this module uses: exact counts and purges need a whole keyspace,
    which an external ``REDIS_URL`` server (shared with others) cannot give."""
    require(RedisServer.binary is not None, "redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("ops-redis")).start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(private_redis_server):
    client = private_redis_server.client(socket_timeout=5)
    client.flushdb()  # our own server, started above
    yield client
    client.close()


@pytest.fixture
def json_logs(capsys):
    """Return a function giving the JSON records written to stdout so far (all must parse)."""

    def read() -> list[dict]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    return read


@pytest.fixture
def redis_down(fake_redis):
    """Make every command on ``fake_redis`` fail as if Redis were unreachable."""
    fake_redis.connection_pool.connection_kwargs["server"].connected = False
    return fake_redis
