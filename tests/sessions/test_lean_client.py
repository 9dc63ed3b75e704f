"""The lean client against redis-py's own, on real servers: same answers, same recovery."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatbot_sessions.config import load_settings
from chatbot_sessions.sessions.connection import connect
from chatbot_sessions.sessions.lean_client import (
    LeanConnectionPool,
    LeanRedis,
    LeanSentinelConnectionPool,
)
from chatbot_sessions.sessions.lua import LuaScript
from tests.support.processes import RedisServer, wait_until

pytestmark = pytest.mark.redis

# Every kind of reply a script can give, and an error.
ECHO = "return ARGV"
# A script that keeps the server busy for 300 ms before it answers.
SLOW = """
local start = redis.call('TIME')
repeat local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 300000
return 'slow reply'
"""
KINDS = """
local kind = ARGV[1]
if kind == 'int' then return 42 end
if kind == 'nil' then return nil end
if kind == 'status' then return redis.status_reply('FINE') end
if kind == 'nested' then return {1, 'two', {3, 'four'}} end
if kind == 'error' then return redis.error_reply('ERR made to fail') end
if kind == 'boom' then return redis.call('NO-SUCH-COMMAND') end
return 'text ' .. kind
"""


@pytest.fixture
def lean_client():
    """Factory: the client ``connect`` builds for a server; closed after the test, so each
    test counts only its own connections."""
    made: list[redis.Redis] = []

    def make(server: RedisServer, **environ: str) -> LeanRedis:
        client = connect(load_settings(environ={"REDIS_URL": server.url, **environ}))
        assert isinstance(client, LeanRedis)
        assert isinstance(client.connection_pool, LeanConnectionPool)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def stock_client(lean: LeanRedis) -> redis.Redis:
    """redis-py's own client with the very same connection settings."""
    pool = lean.connection_pool
    stock = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    stock.auto_close_connection_pool = True
    return stock


def outcome(call):
    try:
        return ("ok", call())
    except Exception as exc:  # the comparison is the point: type and text
        return ("raised", type(exc), str(exc))


def connected_clients(server: RedisServer) -> int:
    with server.client() as admin:
        return int(admin.info("clients")["connected_clients"]) - 1  # not counting admin


@pytest.fixture
def server(private_redis_server):
    private_redis_server.client().flushdb()  # our own server
    return private_redis_server


def test_scripts_take_the_short_path_and_other_commands_redis_pys(lean_client, server, monkeypatch):
    client = lean_client(server)
    through_redis_py = []
    original = redis.Redis.execute_command

    def spy(self, *args, **options):
        through_redis_py.append(args[0])
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", spy)
    echo = LuaScript(client, ECHO)
    echo(args=["warm"])  # loads the script on NOSCRIPT (SCRIPT LOAD is redis-py's path)
    through_redis_py.clear()
    assert echo(args=["a", "b"]) == ["a", "b"]
    client.set("plain", "1")
    assert through_redis_py == ["SET"]


@pytest.mark.parametrize("kind", ["int", "nil", "status", "nested", "error", "boom", "words"])
def test_every_reply_and_error_is_the_one_redis_py_gives(lean_client, server, kind, request):
    lean = lean_client(server)
    stock = stock_client(lean)
    request.addfinalizer(stock.close)
    sha = stock.script_load(KINDS)
    assert outcome(lambda: lean.evalsha(sha, 0, kind)) == outcome(
        lambda: stock.evalsha(sha, 0, kind)
    )
    assert outcome(lambda: lean.execute_command("EVALSHA", sha, 0, kind)) == outcome(
        lambda: stock.execute_command("EVALSHA", sha, 0, kind)
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["text", b"bytes", 7, 2.5, "\u00e9t\u00e9 \U0001f600"],  # what the store sends
        [bytearray(b"array"), memoryview(b"view")],  # redis-py's pack turns these to bytes
        [None],  # refused before anything is sent
        ["lone \udc80 surrogate"],  # refused by UTF-8
        [object()],
    ],
)
def test_arguments_are_packed_as_redis_pys_own_client_packs_them(
    lean_client, server, arguments, request
) -> None:
    lean = lean_client(server)
    stock = stock_client(lean)
    request.addfinalizer(stock.close)
    sha = stock.script_load(ECHO)
    assert outcome(lambda: lean.evalsha(sha, 0, *arguments)) == outcome(
        lambda: stock.evalsha(sha, 0, *arguments)
    )
    assert lean.evalsha(sha, 0, "after") == ["after"]  # the client goes on working


def test_an_unknown_script_raises_noscript_and_leaves_the_connection_usable(lean_client, server):
    client = lean_client(server)
    with pytest.raises(NoScriptError):
        client.execute_command("EVALSHA", "0" * 40, 0)
    with pytest.raises(ResponseError, match="made to fail"):
        LuaScript(client, KINDS)(args=["error"])
    assert LuaScript(client, ECHO)(args=["after"]) == ["after"]
    assert connected_clients(server) == 1  # errors in replies keep the connection


def test_a_connection_the_server_closed_is_replaced_before_use(lean_client, server):
    client = lean_client(server)
    echo = LuaScript(client, ECHO)
    assert echo(args=["before"]) == ["before"]
    with server.client() as admin:
        killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed == 1
    # The pooled socket is dead; the borrow notices and reconnects, so nothing fails.
    assert echo(args=["after"]) == ["after"]


def test_a_restarted_server_is_reached_again_without_a_failed_call(lean_client, tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        client = lean_client(server)
        echo = LuaScript(client, ECHO)
        assert echo(args=["first"]) == ["first"]
        server.kill()
        with pytest.raises(RedisConnectionError):
            echo(args=["while down"])
        server.start()
        # The new server has no scripts: NOSCRIPT, load, run, on a fresh connection.
        assert echo(args=["back"]) == ["back"]
    finally:
        server.stop()


def test_after_a_timeout_the_late_reply_is_never_read_as_the_next_ones(lean_client, tmp_path):
    """A stalled server answers late; had the connection been kept, the next call would
    read the previous call's reply. The short path drops the socket, as redis-py does."""
    server = RedisServer(tmp_path).start()
    try:
        client = lean_client(server, REDIS_SOCKET_TIMEOUT="0.3")
        echo = LuaScript(client, ECHO)
        assert echo(args=["warm"]) == ["warm"]
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                echo(args=["late"])
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert echo(args=["mine"]) == ["mine"]
        assert echo(args=["and mine"]) == ["and mine"]
    finally:
        server.stop()


def test_max_connections_is_kept(lean_client, server):
    client = lean_client(server, REDIS_MAX_CONNECTIONS="1")
    echo = LuaScript(client, ECHO)
    assert echo(args=["one"]) == ["one"]
    held = client.connection_pool.get_connection()
    try:
        with pytest.raises(MaxConnectionsError):
            echo(args=["two"])
    finally:
        client.connection_pool.release(held)
    assert echo(args=["three"]) == ["three"]


def test_threads_share_a_few_connections_and_give_every_one_back(lean_client, server):
    client = lean_client(server)
    echo = LuaScript(client, ECHO)
    wrong = []

    def work(n: int) -> None:
        for i in range(200):
            if echo(args=[f"{n}:{i}"]) != [f"{n}:{i}"]:
                wrong.append((n, i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert 1 <= connected_clients(server) <= 8
    # Every borrowed connection came back: one caller can now take all eight at once.
    pool = client.connection_pool
    taken = [pool.get_connection() for _ in range(connected_clients(server))]
    assert connected_clients(server) == len(taken)
    for connection in taken:
        pool.release(connection)


def _child_calls(client: LeanRedis, queue) -> None:
    queue.put(LuaScript(client, ECHO)(args=[f"child {os.getpid()}"]))


def test_a_forked_child_opens_its_own_connection(lean_client, server):
    client = lean_client(server)
    echo = LuaScript(client, ECHO)
    assert echo(args=["parent"]) == ["parent"]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_calls, args=(client, queue))
    child.start()
    answer = queue.get(timeout=10)
    child.join(timeout=10)
    assert answer == [f"child {child.pid}"]
    # The parent's pooled socket was not shared with the child: it still answers in order.
    assert echo(args=["parent again"]) == ["parent again"]
    wait_until(lambda: connected_clients(server) == 1, 5, what="the child's connection closed")


class _OneMaster:
    """A Sentinel manager naming one master (the real server) until told of a failover."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.master = address

    def discover_master(self, _name: str) -> tuple[str, int]:
        return self.master


def _sentinel_client(server: RedisServer) -> tuple[LeanRedis, _OneMaster]:
    sentinel = _OneMaster(("127.0.0.1", server.port))
    pool = LeanSentinelConnectionPool("mymaster", sentinel, socket_timeout=2, decode_responses=True)
    return LeanRedis(connection_pool=pool), sentinel


class _CutShort(BaseException):
    """What a KeyboardInterrupt or a gevent Timeout is to the client: not an Exception."""


def test_a_call_cut_short_leaves_no_reply_for_the_next_caller(server):
    """A Sentinel connection does not drop itself when a read is interrupted, and with
    RESP3 the borrow does not look for unread data: the client must drop it."""
    client, _ = _sentinel_client(server)
    slow = LuaScript(client, SLOW)
    echo = LuaScript(client, ECHO)
    assert echo(args=["warm"]) == ["warm"]

    def cut_short(*_args) -> None:
        raise _CutShort

    previous = signal.signal(signal.SIGALRM, cut_short)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(_CutShort):
            slow(args=[])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    threading.Event().wait(0.4)  # the slow reply has been sent by now
    assert echo(args=["mine"]) == ["mine"]
    client.close()


def test_a_failover_during_a_release_leaves_no_connection_to_the_old_master(server):
    """A release and a failover (the sentinels name a new master, idle connections are
    dropped) race; whichever goes first, no idle connection to the old master survives."""
    client, sentinel = _sentinel_client(server)
    pool = client.connection_pool
    connection = pool.get_connection()
    connection.connect()
    decided = type(pool).owns_connection
    failover = threading.Thread(target=pool.proxy.get_master_address)

    def owns_then_failover(self, conn) -> bool:
        answer = decided(self, conn)  # "still the master's", and then the master changes
        sentinel.master = ("localhost", server.port)
        failover.start()
        failover.join(0.2)
        return answer

    pool.owns_connection = owns_then_failover.__get__(pool)
    pool.release(connection)
    failover.join(5)
    assert pool.master_address == ("localhost", server.port)
    old = [c for c in pool._available_connections if c._sock is not None and c.host != "localhost"]
    assert old == []
    client.close()
