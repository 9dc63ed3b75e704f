"""Redis killed, restarted and stalled under load: the service answers 503 fast and recovers.

Each test starts its own ``redis-server`` (AOF with ``appendfsync always``, on a fixed port
so it can come back on the same address) and the service under gunicorn with a short
Redis socket timeout, then drives bounded load from a few threads over loopback.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from chatbot_sessions.sessions.codec import decode_message
from chatbot_sessions.sessions.keys import session_keys
from tests.conftest import require
from tests.support.processes import GunicornServer, RedisServer, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.slow]

SOCKET_TIMEOUT = 0.5
# A 503 must arrive within the socket timeout plus this much (HTTP, gunicorn, the app).
MARGIN = 0.5
THREADS = 4


@dataclass
class Outcome:
    """One request of the load and how it ended (status 0: no HTTP answer at all)."""

    sid: str
    question: str
    key: str | None
    started: float
    elapsed: float
    status: int
    error: str | None


@dataclass
class Load:
    """A few threads, each sending numbered questions into its own session until stopped."""

    base: str
    keyed: bool
    max_per_thread: int = 3000
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for t in range(THREADS):
            sid = requests.post(f"{self.base}/api/session/create", timeout=5).json()["sessionId"]
            thread = threading.Thread(target=self._run, args=(t, sid), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _run(self, t: int, sid: str) -> None:
        with requests.Session() as http:
            for i in range(self.max_per_thread):
                if self.stop.is_set():
                    return
                outcome = send(http, self.base, sid, f"t{t}-{i}", self._key())
                with self.lock:
                    self.outcomes.append(outcome)

    def _key(self) -> str | None:
        return str(uuid.uuid4()) if self.keyed else None

    def finish(self) -> list[Outcome]:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive(), "a load thread hung"
        return sorted(self.outcomes, key=lambda o: o.started)

    def count(self) -> int:
        with self.lock:
            return len(self.outcomes)


def send(http, base: str, sid: str, question: str, key: str | None) -> Outcome:
    headers = {"session-id": sid, **({"Idempotency-Key": key} if key else {})}
    started = time.monotonic()
    try:
        response = http.post(
            f"{base}/api/send-message", json={"question": question}, headers=headers, timeout=5
        )
        status = response.status_code
        error = response.json().get("error") if status != 200 else None
        if status == 200:
            assert response.json()["sessionId"] == sid
    except requests.RequestException as exc:  # a hang (client timeout) or a dropped connection
        status, error = 0, type(exc).__name__
    return Outcome(sid, question, key, started, time.monotonic() - started, status, error)


def stored_questions(redis_server: RedisServer, sids: set[str]) -> Counter:
    """Every user turn stored in the given sessions, read straight from Redis."""
    client = redis_server.client(socket_timeout=5)
    counts: Counter = Counter()
    for sid in sids:
        raw = client.lrange(session_keys(sid)[1], 0, -1)
        messages = [decode_message(m, i) for i, m in enumerate(raw)]  # ids not compared
        for asked, answered in zip(messages[::2], messages[1::2], strict=True):
            assert asked["type"] == "user" and answered["type"] == "assistant"
            assert asked["timestamp"] <= answered["timestamp"]  # answer follows question
            counts[(sid, asked["content"])] += 1
    client.close()
    return counts


def assert_fast_503s(outcomes: list[Outcome]) -> None:
    assert outcomes, "no requests fell in the outage window"
    for o in outcomes:
        assert (o.status, o.error) == (503, "store_unavailable"), o
        assert o.elapsed <= SOCKET_TIMEOUT + MARGIN, o


def assert_nothing_broke(outcomes: list[Outcome], server: GunicornServer, workers: set[int]):
    assert {o.status for o in outcomes} <= {200, 503}, Counter(o.status for o in outcomes)
    slowest = max(outcomes, key=lambda o: o.elapsed)
    assert slowest.elapsed <= SOCKET_TIMEOUT + MARGIN, slowest  # no hangs, in-flight ones too
    assert server.worker_pids() == workers  # no worker died or was recycled
    log = server.log_path.read_text()
    assert "unhandled error" not in log and "WORKER TIMEOUT" not in log


@pytest.fixture
def redis_with_aof(tmp_path):
    require(RedisServer.binary is not None, "redis-server is not installed")
    server = RedisServer(
        tmp_path / "redis",
        None,
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--enable-debug-command", "local",
    )  # fmt: skip
    server.start()
    with server.client() as admin:
        assert admin.config_get("appendfsync") == {"appendfsync": "always"}
    yield server
    server.stop()


@pytest.fixture
def service(tmp_path, redis_with_aof):
    server = GunicornServer(
        {
            "REDIS_URL": redis_with_aof.url,
            "REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT),
            "REDIS_CONNECT_TIMEOUT": str(SOCKET_TIMEOUT),
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "4",
            "MAX_MESSAGES_PER_SESSION": "100000",
            "LLM_TIMEOUT": "1",  # an idempotency lease outlives its request by LLM_TIMEOUT + 2 s
        },
        tmp_path,
    ).start()
    wait_until(lambda: len(server.worker_pids()) == 2, 10, what="both workers booted")
    yield server
    server.stop()


def test_redis_killed_and_restarted_under_load(service, redis_with_aof):
    workers = service.worker_pids()
    load = Load(service.base_url, keyed=True).start()
    wait_until(lambda: load.count() >= 100, 10, what="load warming up")

    redis_with_aof.kill()
    killed_at = time.monotonic()
    time.sleep(1.5)  # of outage under load

    restarting_at = time.monotonic()  # Redis may answer before start() has seen it do so
    redis_with_aof.start()  # same port, same dir: the AOF is loaded back
    restarted_at = time.monotonic()
    time.sleep(3)  # of load after the restart
    outcomes = load.finish()

    assert_nothing_broke(outcomes, service, workers)
    before = [o for o in outcomes if o.started + o.elapsed < killed_at]
    down = [o for o in outcomes if killed_at < o.started and o.started + o.elapsed < restarting_at]
    after = [o for o in outcomes if o.started > restarted_at]
    assert before and all(o.status == 200 for o in before)
    assert_fast_503s(down)
    first_200 = min(o.started + o.elapsed for o in after if o.status == 200)
    assert first_200 - restarted_at <= 2.0, "the service did not serve again within 2 s"
    assert all(o.status == 200 for o in after if o.started > restarted_at + 2.0)

    # Nothing acknowledged was lost, nothing was stored twice.
    sids = {o.sid for o in outcomes}
    stored = stored_questions(redis_with_aof, sids)
    for o in outcomes:
        expected = {1} if o.status == 200 else {0, 1}  # a 503'd turn may have been stored
        assert stored[(o.sid, o.question)] in expected, o
    assert all(count == 1 for count in stored.values())

    # Retrying every failed request with its Idempotency-Key stores each turn exactly once,
    # whether or not the failed attempt had stored it.
    failed = [o for o in outcomes if o.status != 200]
    with requests.Session() as http:
        for o in failed:
            deadline = time.monotonic() + 10  # a lease left by a killed attempt lapses in 3 s
            while (retry := send(http, service.base_url, o.sid, o.question, o.key)).status == 409:
                assert time.monotonic() < deadline, o
                time.sleep(0.2)
            assert retry.status == 200, retry
    stored = stored_questions(redis_with_aof, sids)
    assert all(stored[(o.sid, o.question)] == 1 for o in outcomes)
    assert service.worker_pids() == workers


def test_redis_stalled_by_debug_sleep(service, redis_with_aof):
    workers = service.worker_pids()
    load = Load(service.base_url, keyed=False).start()
    wait_until(lambda: load.count() >= 100, 10, what="load warming up")

    stall = 2.0
    admin = redis_with_aof.client(socket_timeout=stall + 5)
    stalled_at = time.monotonic()
    admin.execute_command("DEBUG", "SLEEP", stall)  # blocks the whole server, as a slow command
    resumed_at = time.monotonic()
    admin.close()
    time.sleep(1.5)  # of load after the stall
    outcomes = load.finish()

    assert_nothing_broke(outcomes, service, workers)
    # Started while Redis could not answer within the socket timeout: a fast 503.
    stalled = [
        o for o in outcomes if stalled_at + 0.05 < o.started < resumed_at - SOCKET_TIMEOUT - 0.1
    ]
    assert_fast_503s(stalled)
    recovered = [o for o in outcomes if o.started > resumed_at + SOCKET_TIMEOUT]
    assert len(recovered) >= 10 and all(o.status == 200 for o in recovered)
    stored = stored_questions(redis_with_aof, {o.sid for o in outcomes})
    for o in outcomes:
        # A timed-out append still runs once Redis wakes: stored, though the client got 503.
        assert stored[(o.sid, o.question)] in ({1} if o.status == 200 else {0, 1}), o
