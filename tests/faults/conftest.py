"""Fixtures of the fault tests: a redis-server of their own, behind a fault-injecting proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import require
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import RedisServer


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory) -> Iterator[RedisServer]:
    """A redis-server started for this module alone, so its tests may scan and flush it."""
    require(RedisServer.binary is not None, "redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_proxy(own_redis) -> Iterator[FaultProxy]:
    """A proxy to ``own_redis`` for the whole module; each test's faults are cleared after it."""
    with FaultProxy(own_redis.port) as proxy:
        yield proxy


@pytest.fixture
def proxy(fault_proxy) -> Iterator[FaultProxy]:
    """The module's proxy, with no fault armed when the test starts or after it ends."""
    fault_proxy.clear()
    yield fault_proxy
    fault_proxy.clear()


@pytest.fixture
def direct(own_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client of the Redis itself, bypassing the proxy; the server is ours to flush."""
    client = own_redis.client(socket_timeout=5)
    client.flushdb()
    yield client
    client.close()
