"""Shared fixtures: apps on fakeredis for unit tests, real Redis and gunicorn for integration.

A test that needs a real server skips with a reason when none can be had on a developer's
machine, but under ``CI=true`` the same situation fails: a skipped test is not a passed one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import fakeredis
import pytest
import redis

from chatbot_sessions import create_app
from chatbot_sessions.config import load_settings
from chatbot_sessions.domain import Message, Reply, Source
from chatbot_sessions.extensions import close_app
from chatbot_sessions.sessions.connection import connect
from tests.support.fake_llm import FakeLLM, start_fake_llm
from tests.support.processes import GunicornServer, RedisServer

IN_CI = os.environ.get("CI", "").lower() == "true"

# Apps built by tests that are not about retrieval use BM25: no model to load, nothing to
# embed. Tests of hybrid retrieval ask for it explicitly (tests/replies/conftest.py). Set
# before any app reads the environment; gunicorn servers the tests start inherit it.
os.environ.setdefault("RETRIEVAL", "bm25")


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, except in CI, where it is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


class RecordingGenerator:
    """A deterministic generator that remembers what it was asked, for asserting context."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Message]]] = []
        self._lock = threading.Lock()

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        with self._lock:
            self.calls.append((question, list(history)))
        return Reply(
            text=f"answer to: {question}",
            sources=(Source(title="Guide", source="guide.md", score=1.5),),
        )


@pytest.fixture
def generator() -> RecordingGenerator:
    return RecordingGenerator()


@pytest.fixture
def fake_llm() -> FakeLLM:
    """A chat-completions server on loopback (``tests/support/fake_llm.py``), fresh per test."""
    server, stop = start_fake_llm()
    yield server
    stop()


@pytest.fixture
def fake_redis() -> redis.Redis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture
def make_app(fake_redis, generator) -> Callable:
    """Build an app on fakeredis (or the given client) with the recording generator."""

    apps = []

    def _make(overrides: dict | None = None, client: redis.Redis | None = None):
        config = {"RATE_LIMIT_ENABLED": "0", **(overrides or {})}
        app = create_app(
            config, redis_client=client if client is not None else fake_redis,
            reply_generator=generator,
        )  # fmt: skip
        apps.append(app)
        return app

    yield _make
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def redis_client(request) -> redis.Redis:
    """The same test twice: on fakeredis, and on the real Redis (only its own keys touched)."""
    return request.getfixturevalue("fake_redis" if request.param == "fakeredis" else "real_redis")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis: ``REDIS_URL`` if the environment names one, else our own redis-server."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    require(RedisServer.binary is not None, "redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def real_redis(redis_server) -> redis.Redis:
    """The client the service builds for the real Redis (``sessions.connection.connect``);
    our own server is flushed first, an external one never."""
    client = connect(
        load_settings(environ={"REDIS_URL": redis_server, "REDIS_SOCKET_TIMEOUT": "5"})
    )
    if not os.environ.get("REDIS_URL"):
        client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="module")
def private_redis_server(tmp_path_factory):
    """A redis-server only this module uses: exact counts and purges need a whole keyspace,
    which an external ``REDIS_URL`` server (shared with others) cannot give."""
    require(RedisServer.binary is not None, "redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("private-redis")).start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(private_redis_server):
    client = private_redis_server.client(socket_timeout=5)
    client.flushdb()  # our own server, started above
    yield client
    client.close()


@pytest.fixture
def redis_down(fake_redis):
    """Make every command on ``fake_redis`` fail as if Redis were unreachable."""
    fake_redis.connection_pool.connection_kwargs["server"].connected = False
    return fake_redis


@pytest.fixture
def gunicorn_server(tmp_path, redis_server):
    """Factory: the service under real gunicorn against the real Redis, stopped afterwards."""
    servers: list[GunicornServer] = []

    def _start(**env: str) -> GunicornServer:
        server = GunicornServer({"REDIS_URL": redis_server, **env}, tmp_path).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """create_app installs a JSON stdout handler on the root logger (once per process in
    production); put the root logger back so one test's app does not print into another's
    captured output."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
