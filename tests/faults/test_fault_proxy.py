"""The fault proxy itself: a real redis-server behind it, a redis-py client (hiredis) in front.

Every fault is checked against the server read directly, not through the proxy: a swallowed
reply must mean the command ran, a cut command that it did not.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.fault_proxy import FaultProxy, ProxyStats, parse_command, parse_reply

# Counts its calls on the server, so a test can tell whether a call ran.
INCR_SCRIPT = "return redis.call('INCR', KEYS[1])"


@pytest.mark.parametrize(
    ("reply", "error", "push"),
    [
        (b"+OK\r\n", False, False),
        (b"-NOSCRIPT No matching script\r\n", True, False),
        (b"$-1\r\n", False, False),
        (b"*2\r\n*2\r\n:1\r\n$4\r\na\r\nb\r\n*-1\r\n", False, False),
        (b"%1\r\n+k\r\n~1\r\n,1.5\r\n", False, False),
        (b"|1\r\n+ttl\r\n:3\r\n!5\r\nERR x\r\n", True, False),
        (b">2\r\n$10\r\ninvalidate\r\n_\r\n", False, True),
    ],
)
def test_reply_boundaries(reply: bytes, error: bool, push: bool):
    buf = bytearray(reply + b":7\r\n")  # the next reply must not be swallowed into this one
    assert parse_reply(buf) == (len(reply), error, push)
    for cut in range(len(reply)):
        assert parse_reply(bytearray(reply[:cut])) is None


def test_command_boundaries():
    request = b"*3\r\n$3\r\nSET\r\n$4\r\nk\r\nx\r\n$0\r\n\r\n"  # a value holding CRLF
    assert parse_command(bytearray(request + b"PING\r\n")) == (
        [b"SET", b"k\r\nx", b""],
        len(request),
    )
    for cut in range(len(request)):
        assert parse_command(bytearray(request[:cut])) is None
    assert parse_command(bytearray(b"PING extra\r\n*1")) == ([b"PING", b"extra"], 12)
    assert parse_command(bytearray(b"\r\n")) == ([], 2)  # ignored by Redis: no reply owed


def through(proxy: FaultProxy, **options) -> redis.Redis:
    """A client of the proxy that never retries, so each fault surfaces as an exception."""
    options = {"socket_timeout": 2, "retry": Retry(NoBackoff(), 0), **options}
    return redis.Redis(host="127.0.0.1", port=proxy.port, decode_responses=True, **options)


@pytest.mark.redis
def test_ordinary_traffic_passes_through(proxy, direct):
    before = proxy.stats()
    client = through(proxy)
    assert client.ping()
    assert client.set("plain", "value") and client.get("plain") == "value"
    big = "x" * 3_000_000  # many recv() chunks each way
    client.set("big", big)
    assert client.get("big") == big

    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.rpush("list", i)
    pipe.lrange("list", 0, -1)
    pipe.get("missing")
    *pushed, listed, missing = pipe.execute()
    assert pushed == list(range(1, 201)) and listed == [str(i) for i in range(200)]
    assert missing is None
    with client.pipeline(transaction=True) as tx:  # MULTI, +QUEUED per command, EXEC array
        tx.incr("n").incr("n").hset("h", mapping={"a": "1", "b": "2"}).hgetall("h")
        assert tx.execute() == [1, 2, 2, {"a": "1", "b": "2"}]
    with pytest.raises(redis.ResponseError):
        client.execute_command("NO-SUCH-COMMAND")
    assert client.eval("return {1, {2, 'x'}, redis.status_reply('OK')}", 0) == [1, [2, "x"], "OK"]

    # register_script: EVALSHA answered NOSCRIPT, then SCRIPT LOAD, then EVALSHA again.
    script = client.register_script(f"-- fresh {time.monotonic()}\n{INCR_SCRIPT}")
    assert script(keys=["calls"]) == 1 and script(keys=["calls"]) == 2
    assert direct.get("calls") == "2"

    resp3 = through(proxy, protocol=3)  # HELLO 3 and RESP3 maps, sets, doubles, nulls
    assert resp3.hgetall("h") == {"a": "1", "b": "2"}
    resp3.zadd("z", {"m": 1.5})
    resp3.sadd("s", "one")
    assert resp3.zscore("z", "m") == 1.5 and resp3.smembers("s") == {"one"}
    assert resp3.get("missing") is None

    seen = proxy.stats().since(before)
    assert seen.commands["EVALSHA"] == 3 and seen.commands["SCRIPT"] == 1
    assert seen.commands["HELLO"] >= 1 and seen.commands["CLIENT"] >= 2  # CLIENT SETINFO
    assert seen.commands["RPUSH"] == 200 and seen.commands["EXEC"] == 1
    assert (seen.replies_dropped, seen.connections_reset, seen.commands_cut) == (0, 0, 0)
    assert seen.connections == 2  # each client kept its one connection: nothing broke
    client.close()
    resp3.close()


@pytest.mark.redis
def test_swallowed_reply_ran_on_the_server(proxy, direct):
    client = through(proxy)
    assert client.eval(INCR_SCRIPT, 1, "runs") == 1
    before = proxy.stats()
    proxy.swallow_next_reply("EVAL")
    assert proxy.armed() == 1
    with pytest.raises(redis.ConnectionError):
        client.eval(INCR_SCRIPT, 1, "runs")
    assert direct.get("runs") == "2"  # it ran although the client was told nothing
    assert proxy.armed() == 0
    done = proxy.stats().since(before)
    assert (done.replies_dropped, done.connections_reset) == (1, 1)
    assert client.eval(INCR_SCRIPT, 1, "runs") == 3  # disarmed after one: a new connection works


@pytest.mark.redis
def test_swallow_resets_the_connection(proxy, direct):
    proxy.swallow_next_reply("SET")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as raw:
        raw.sendall(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        assert raw.recv(100) == b"+PONG\r\n"  # replies before the swallowed one are delivered
        with pytest.raises(ConnectionResetError):  # an RST, not an orderly FIN
            raw.recv(100)
    assert direct.get("k") == "v"


@pytest.mark.redis
def test_swallow_forwards_nothing_after_the_command(proxy, direct):
    proxy.swallow_next_reply("SET", containing="first")
    pipe = through(proxy).pipeline(transaction=False)
    pipe.set("a", "first").set("b", "second")
    with pytest.raises(redis.ConnectionError):
        pipe.execute()
    assert direct.get("a") == "first"
    assert direct.get("b") is None  # sent in the same write, never reached Redis


@pytest.mark.redis
def test_swallow_targets_by_argument_and_skips_after(proxy, direct):
    client = through(proxy)
    proxy.swallow_next_reply("EVAL", containing=b"target", after=1)
    assert client.eval(INCR_SCRIPT, 1, "other") == 1  # does not match
    assert client.eval(INCR_SCRIPT, 1, "target") == 1  # matches, skipped
    with pytest.raises(redis.ConnectionError):
        client.eval(INCR_SCRIPT, 1, "target")
    assert direct.get("target") == "2"
    assert client.eval(INCR_SCRIPT, 1, "target") == 3


@pytest.mark.redis
def test_swallow_spares_noscript_and_hits_the_call_that_runs(proxy, direct):
    before = proxy.stats()
    script = through(proxy).register_script(f"-- fresh {time.monotonic()}\n{INCR_SCRIPT}")
    proxy.swallow_next_reply("EVALSHA")
    with pytest.raises(redis.ConnectionError):
        script(keys=["loaded"])  # EVALSHA (NOSCRIPT, passed on), SCRIPT LOAD, EVALSHA (lost)
    assert direct.get("loaded") == "1"
    done = proxy.stats().since(before)
    assert done.commands["EVALSHA"] == 2 and done.commands["SCRIPT"] == 1
    assert (done.errors_spared, done.replies_dropped) == (1, 1)


@pytest.mark.redis
def test_swallow_count_spans_connections(proxy, direct):
    proxy.swallow_next_reply("INCRBY", count=2)  # what incr() sends
    client = through(proxy)
    for _ in range(2):
        with pytest.raises(redis.ConnectionError):
            client.incr("twice")
    assert client.incr("twice") == 3
    assert direct.get("twice") == "3"


@pytest.mark.redis
def test_close_mid_command_does_not_run(proxy, direct):
    client = through(proxy)
    client.ping()
    sets_run = set_calls(direct)
    before = proxy.stats()
    proxy.close_mid_command("SET")
    with pytest.raises(redis.ConnectionError):
        client.set("cut", "y" * 10_000)
    done = proxy.stats().since(before)
    assert (done.commands_cut, done.replies_dropped) == (1, 0)
    assert direct.get("cut") is None
    assert set_calls(direct) == sets_run  # Redis never ran a SET
    assert client.set("cut", "whole") and direct.get("cut") == "whole"


def set_calls(client: redis.Redis) -> int:
    """How many SET commands the server has run, from its own statistics."""
    return client.info("commandstats").get("cmdstat_set", {}).get("calls", 0)


@pytest.mark.redis
def test_delay_holds_replies(proxy, direct):
    client = through(proxy)
    client.ping()  # connected before timing
    proxy.delay(0.4)
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    pipe.set("slow", "1").get("slow")
    assert pipe.execute() == [True, "1"]
    assert 0.4 <= time.monotonic() - started < 1.0  # held once per batch, not per reply
    proxy.delay(0)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started < 0.2


@pytest.mark.redis
def test_delay_longer_than_the_socket_timeout_is_a_timeout(proxy, direct):
    client = through(proxy, socket_timeout=0.2)
    client.ping()
    proxy.delay(0.6, count=1)
    with pytest.raises(redis.TimeoutError):
        client.set("stalled", "1")
    assert direct.get("stalled") == "1"  # a stall is not a failure: it ran
    assert through(proxy).get("stalled") == "1"  # only one reply was held


def lossy_run(proxy: FaultProxy, calls: int) -> tuple[list[int], ProxyStats]:
    """Make ``calls`` counting script calls, one at a time; return the indices that failed."""
    client = through(proxy)
    before = proxy.stats()
    failed = []
    for i in range(calls):
        try:
            client.eval(INCR_SCRIPT, 1, "lossy")
        except redis.ConnectionError:
            failed.append(i)
    client.close()
    return failed, proxy.stats().since(before)


@pytest.mark.redis
def test_one_in_n_loses_about_that_many_and_repeats_with_its_seed(proxy, direct):
    calls, one_in = 400, 4
    proxy.lose_replies(one_in, seed=9)
    failed, done = lossy_run(proxy, calls)
    # Binomial(400, 1/4): mean 100, sd 8.7; the seed fixes the draw, the bound documents it.
    assert 70 <= len(failed) <= 130
    assert done.replies_dropped == done.connections_reset == len(failed)
    assert direct.get("lossy") == str(calls)  # every call ran, the lost ones too
    direct.delete("lossy")
    proxy.lose_replies(one_in, seed=9)
    assert lossy_run(proxy, calls)[0] == failed  # the same seed loses the same calls
    proxy.lose_replies(0, seed=9)
    assert lossy_run(proxy, 50)[0] == []


@pytest.mark.redis
def test_one_in_n_is_thread_safe(proxy, direct):
    threads, each = 8, 60
    proxy.lose_replies(5, seed=3, command=("EVAL", "EVALSHA"))
    before = proxy.stats()
    errors: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        client = through(proxy)
        mine = 0
        for _ in range(each):
            try:
                client.eval(INCR_SCRIPT, 1, "shared")
                client.incr("plain")  # not a script call: never lost
            except redis.ConnectionError:
                mine += 1
        with lock:
            errors.append(mine)
        client.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(errors) == threads
    done = proxy.stats().since(before)
    assert done.commands["EVAL"] == threads * each
    assert sum(errors) == done.replies_dropped > 0
    assert direct.get("shared") == str(threads * each)
    assert direct.get("plain") == str(threads * each - sum(errors))
