"""Rate limits: per IP on create and send, per session on send; 429 envelope; fail-open."""

from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from chatbot_sessions import create_app
from chatbot_sessions.config import ConfigError, load_settings
from chatbot_sessions.extensions import resources
from chatbot_sessions.security.rate_limits import KEY_PREFIX
from chatbot_sessions.sessions.connection import connect
from chatbot_sessions.sessions.ids import new_session_id
from tests.support import api
from tests.support.commands import fail_commands, lose_replies, record_commands
from tests.support.processes import free_port


def limited_app(make_app, client=None, **limits):
    return make_app({"RATE_LIMIT_ENABLED": "1", **limits}, client=client)


def from_ip(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def send(client, sid=None, ip="10.0.0.1", headers=None):
    """A send from ``ip``; a falsy ``sid`` sends no session-id header."""
    return api.send(client, sid=sid or None, ip=ip, headers=headers)


def create(client, ip="10.0.0.1"):
    return client.post("/api/session/create", **from_ip(ip))


def session_data(redis_client) -> set[str]:
    """Every key that is not a rate-limit counter: what the store holds."""
    return {key for key in redis_client.scan_iter() if not key.startswith(KEY_PREFIX)}


def assert_rate_limited(response, window_seconds: int):
    body = response.get_json()
    assert response.status_code == 429
    assert body["success"] is False and body["error"] == "rate_limited"
    assert body["message"] and isinstance(body["details"], dict)
    assert 1 <= int(response.headers["Retry-After"]) <= window_seconds


def test_create_is_limited_per_client_ip(make_app):
    client = limited_app(make_app, RATE_LIMIT_CREATE="3/minute").test_client()
    statuses = [client.post("/api/session/create", **from_ip("10.0.0.1")).status_code
                for _ in range(3)]  # fmt: skip
    assert statuses == [201, 201, 201]
    assert_rate_limited(client.post("/api/session/create", **from_ip("10.0.0.1")), 60)
    assert client.post("/api/session/create", **from_ip("10.0.0.2")).status_code == 201


def test_send_is_limited_per_session_and_per_ip(make_app):
    client = limited_app(
        make_app, RATE_LIMIT_SEND_SESSION="2/minute", RATE_LIMIT_SEND_IP="5/minute"
    ).test_client()
    sid = send(client, ip="10.0.0.1").get_json()["sessionId"]  # counted against the IP
    assert send(client, sid, ip="10.0.0.1").status_code == 200
    assert send(client, sid, ip="10.0.0.2").status_code == 200
    # The session's budget is spent whichever address asks next.
    assert_rate_limited(send(client, sid, ip="10.0.0.3"), 60)
    other = str(uuid.uuid4())  # unknown ids start new sessions, each with its own budget
    assert send(client, other, ip="10.0.0.1").status_code == 200
    assert send(client, str(uuid.uuid4()), ip="10.0.0.1").status_code == 200
    # 10.0.0.1 has now made 4 counted sends (the breach on 10.0.0.3 did not count for it)...
    assert send(client, str(uuid.uuid4()), ip="10.0.0.1").status_code == 200
    assert_rate_limited(send(client, str(uuid.uuid4()), ip="10.0.0.1"), 60)  # ...and 6th is out


@pytest.mark.parametrize("header", [None, "garbage", "*", "chat_session:{x}"])
def test_missing_or_malformed_session_ids_count_against_the_ip(make_app, header):
    client = limited_app(
        make_app, RATE_LIMIT_SEND_SESSION="2/minute", RATE_LIMIT_SEND_IP="100/minute"
    ).test_client()
    answers = [
        client.post(
            "/api/send-message",
            json={"question": "q"},
            headers={"session-id": f"{header}{n}"} if header else {},
            **from_ip("10.9.9.9"),
        )
        for n in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]


@pytest.mark.parametrize("session_id", ["fresh unknown id", None])
def test_sends_that_start_sessions_count_against_the_create_limit(
    make_app, fake_redis, generator, session_id
):
    client = limited_app(make_app, RATE_LIMIT_CREATE="3/minute").test_client()

    def start_session():
        return send(client, str(uuid.uuid4()) if session_id else None)

    started = [start_session() for _ in range(3)]
    assert [r.status_code for r in started] == [200, 200, 200]
    assert len({r.get_json()["sessionId"] for r in started}) == 3
    stored, asked = session_data(fake_redis), len(generator.calls)
    assert_rate_limited(start_session(), 60)
    assert session_data(fake_redis) == stored and len(generator.calls) == asked  # nothing stored
    assert_rate_limited(create(client), 60)  # one budget with the create endpoint
    assert send(client, started[0].get_json()["sessionId"]).status_code == 200


def test_sends_into_an_existing_session_do_not_count_against_the_create_limit(make_app):
    client = limited_app(make_app, RATE_LIMIT_CREATE="2/minute").test_client()
    sid = create(client).get_json()["sessionId"]
    assert [send(client, sid).status_code for _ in range(5)] == [200] * 5
    assert create(client).status_code == 201
    assert_rate_limited(create(client), 60)


def test_a_keyed_send_refused_by_the_create_limit_is_refused_again_on_retry(make_app):
    """The refusal ends the key's lease: the retry gets its 429 at once, not a 409 after
    waiting IDEMPOTENCY_WAIT for a lease nobody holds."""
    client = limited_app(
        make_app, RATE_LIMIT_CREATE="1/minute", IDEMPOTENCY_WAIT="0.5"
    ).test_client()
    assert create(client).status_code == 201
    keyed = {"Idempotency-Key": str(uuid.uuid4())}
    assert_rate_limited(send(client, headers=keyed), 60)
    assert_rate_limited(send(client, headers=keyed), 60)


@pytest.mark.redis
def test_no_key_outside_a_session_names_it_once_it_is_deleted(redis_server, real_redis, generator):
    """Rate-limit counters hold a digest of the session id, never the id itself."""
    app = create_app(
        {"REDIS_URL": redis_server, "RATE_LIMIT_ENABLED": "1"}, reply_generator=generator
    )
    client = app.test_client()
    sid = send(client).get_json()["sessionId"]
    for _ in range(3):
        keyed = {"Idempotency-Key": str(uuid.uuid4())}  # records of the session, deleted with it
        assert send(client, sid, headers=keyed).status_code == 200
    counters = real_redis.keys(f"{KEY_PREFIX}*")
    assert any(":session:" in key for key in counters)  # the per-session counter is there...
    assert not any(sid in key for key in counters)  # ...under a name that does not hold the id
    assert client.delete(f"/api/session/{sid}").status_code == 200
    assert list(real_redis.scan_iter(match=f"*{sid}*")) == []


def counter_limits(command) -> set[str]:
    """The limits whose counters a Redis command carries ("create", "send", "session")."""
    return {arg.rsplit(":", 2)[-2] for arg in command if str(arg).startswith(KEY_PREFIX)}


@pytest.mark.parametrize("path", ["/api/session/create", "/api/send-message"])
def test_limits_ride_on_the_session_access_at_no_extra_round_trip(
    make_app, fake_redis, monkeypatch, path
):
    unlimited, limited = make_app().test_client(), limited_app(make_app).test_client()
    sid = create(unlimited).get_json()["sessionId"]

    def request(client):
        return client.post(path, json={"question": "q"}, headers={"session-id": sid})

    for client in (unlimited, limited):  # scripts loaded
        assert request(client).status_code < 300
    sent = record_commands(monkeypatch, fake_redis)
    request(unlimited)
    without = len(sent)
    request(limited)
    with_limits = sent[without:]
    assert len(with_limits) == without, "the same commands, no call of their own"
    counted = [c for c in with_limits if counter_limits(c)]
    assert len(counted) == 1 and counted[0][0] == "EVALSHA"
    assert any(str(arg).startswith("chat_session:") for arg in counted[0]), "a session access"
    expected = {"create"} if path == "/api/session/create" else {"send", "session"}
    assert counter_limits(counted[0]) == expected


def test_a_send_that_starts_a_session_counts_its_send_limits_first(
    make_app, fake_redis, monkeypatch
):
    client = limited_app(make_app).test_client()
    assert send(client).status_code == 200  # scripts loaded
    sent = record_commands(monkeypatch, fake_redis)
    assert send(client).status_code == 200
    counted = [counter_limits(c) for c in sent if counter_limits(c)]
    # No session to ride on: the send's limits before anything else, then the create limit
    # once the chat service knows the turn starts a session.
    assert counted == [{"send", "session"}, {"create"}]
    assert sent[0] == next(c for c in sent if counter_limits(c)), "before any other command"


def test_sends_refused_by_the_send_limit_do_not_spend_the_create_budget(make_app):
    client = limited_app(
        make_app, RATE_LIMIT_SEND_IP="2/minute", RATE_LIMIT_CREATE="5/minute"
    ).test_client()
    assert [send(client).status_code for _ in range(2)] == [200, 200]
    for _ in range(5):
        assert_rate_limited(send(client), 60)  # the send window, not the create one
    assert create(client).status_code == 201  # two sessions so far: within 5/minute


def test_a_keyed_send_refused_by_a_send_limit_stores_nothing_and_waits_for_nothing(
    make_app, fake_redis
):
    app = limited_app(make_app, RATE_LIMIT_SEND_IP="1/minute", IDEMPOTENCY_WAIT="1.5")
    client = app.test_client()
    assert send(client).status_code == 200
    before = session_data(fake_redis)
    key, question = str(uuid.uuid4()), "held"
    assert_rate_limited(api.send(client, question, key=key, ip="10.0.0.1"), 60)
    assert session_data(fake_redis) == before, "no idempotency record of a refused send"
    # Another attempt holds the key: the used-up limit still answers at once.
    resources(app).store.claim(
        key,
        hashlib.sha256(question.encode()).hexdigest(),
        session_id=None,
        proposed_session_id=new_session_id(),
        lease_ms=60_000,
        owner="someone-else",
    )
    started = time.monotonic()
    assert_rate_limited(api.send(client, question, key=key, ip="10.0.0.1"), 60)
    assert time.monotonic() - started < 0.5
    for counter in fake_redis.keys(f"{KEY_PREFIX}*"):  # the window resets
        fake_redis.delete(counter)
    other = str(uuid.uuid4())
    assert api.send(client, "another question", key=other, ip="10.0.0.1").status_code == 200


def test_a_create_whose_reply_was_lost_is_not_refused_by_its_own_count(
    make_app, fake_redis, monkeypatch
):
    # The store runs CREATE again after a lost reply; the counters ride on the first run only.
    client = limited_app(make_app, RATE_LIMIT_CREATE="1/minute").test_client()
    assert make_app().test_client().post("/api/session/create").status_code == 201  # loaded
    lost = lose_replies(monkeypatch, fake_redis, 1, ran=True)
    response = create(client)
    assert len(lost) == 1 and response.status_code == 201
    assert_rate_limited(create(client), 60)  # and it was counted once


def test_a_malformed_send_still_counts_and_a_used_up_limit_answers_first(make_app):
    client = limited_app(make_app, RATE_LIMIT_SEND_IP="2/minute").test_client()
    sid = create(client).get_json()["sessionId"]
    bad = {"session-id": sid}
    statuses = [
        client.post("/api/send-message", json={"nope": 1}, headers=bad, **from_ip("10.0.0.1"))
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses[:2]] == [422, 422]
    assert_rate_limited(statuses[2], 60)
    assert_rate_limited(send(client, sid), 60)  # the malformed ones used the budget up


def test_a_limiter_whose_own_call_fails_lets_the_request_through(make_app, fake_redis, monkeypatch):
    client = limited_app(make_app, RATE_LIMIT_CREATE="2/minute").test_client()
    failed: list[tuple] = []
    original = fake_redis.execute_command

    def counters_alone_fail(*args, **options):
        # The limiter's own call (counters, no session key) breaks; session accesses work.
        names = [a for a in args if isinstance(a, str)]
        if any(a.startswith(KEY_PREFIX) for a in names) and not any(
            a.startswith("chat_session:") for a in names
        ):
            failed.append(args)
            raise redis.exceptions.ConnectionError("refused (test)")
        return original(*args, **options)

    monkeypatch.setattr(fake_redis, "execute_command", counters_alone_fail)
    # Each send starts a session: its limits are the limiter's own call, counted in memory.
    assert [send(client).status_code for _ in range(3)] == [200, 200, 429]
    assert len(failed) == 6  # each: its send limits, then the create limit
    monkeypatch.undo()
    assert not fake_redis.keys(f"{KEY_PREFIX}*"), "nothing reached Redis's counters"


def test_a_counter_redis_cannot_increment_is_skipped(make_app, fake_redis):
    """A counter key of the wrong type (an operator's slip) does not lock its client out."""
    client = limited_app(make_app, RATE_LIMIT_CREATE="1/minute").test_client()
    assert create(client).status_code == 201
    assert_rate_limited(create(client), 60)
    [key] = fake_redis.keys(f"{KEY_PREFIX}*:create:*")
    fake_redis.delete(key)
    fake_redis.hset(key, "not", "a counter")
    assert {create(client).status_code for _ in range(3)} == {201}


def test_a_limiter_timeout_spends_the_request_budget(make_app, fake_redis, monkeypatch):
    """After the limiter waited out a timeout, the store does not wait again: 503 at once."""
    client = limited_app(make_app).test_client()
    sid = create(client).get_json()["sessionId"]
    fail_commands(monkeypatch, fake_redis, redis.exceptions.TimeoutError("test"), KEY_PREFIX)
    sent = record_commands(monkeypatch, fake_redis)
    refused = send(client, sid)
    assert refused.status_code == 503 and refused.get_json()["error"] == "store_unavailable"
    assert [c for c in sent if not any(arg.startswith(KEY_PREFIX) for arg in c)] == []


def test_disabled_limits_install_nothing(make_app):
    app = make_app({"RATE_LIMIT_CREATE": "1/minute"})  # the fixture's default: disabled
    client = app.test_client()
    assert {client.post("/api/session/create").status_code for _ in range(5)} == {201}
    assert "rate_limiter" not in app.extensions and "limiter" not in app.extensions


@pytest.mark.parametrize("value", ["lots", "5 per fortnight", "-1/second"])
def test_bad_limit_strings_stop_start_up_naming_the_variable(value):
    with pytest.raises(ConfigError, match="RATE_LIMIT_SEND_SESSION"):
        load_settings({"RATE_LIMIT_SEND_SESSION": value})


def test_embedded_store_counts_in_memory(generator):
    """No Redis configured: the counters live in the embedded store (fakeredis runs the Lua)."""
    app = create_app(
        {"REDIS_URL": None, "REDIS_HOST": None, "RATE_LIMIT_ENABLED": "1",
         "RATE_LIMIT_CREATE": "2/minute"},
        reply_generator=generator,
    )  # fmt: skip
    client = app.test_client()
    assert [client.post("/api/session/create").status_code for _ in range(3)] == [201, 201, 429]
    assert list(resources(app).redis.scan_iter(match=f"{KEY_PREFIX}*"))


@pytest.mark.redis
def test_counters_live_in_the_sessions_redis_and_are_shared(redis_server, real_redis, generator):
    """Two apps (two workers) on one Redis share one budget, through the sessions' pool."""
    config = {"REDIS_URL": redis_server, "RATE_LIMIT_ENABLED": "1", "RATE_LIMIT_CREATE": "4/hour"}
    apps = [create_app(config, reply_generator=generator) for _ in range(2)]
    assert resources(apps[0]).limiter.client is resources(apps[0]).redis
    ip = f"10.{uuid.uuid4().int % 250}.1.1"  # distinct per run, should REDIS_URL be external
    clients = [app.test_client() for app in apps]
    statuses = [clients[n % 2].post("/api/session/create", **from_ip(ip)).status_code
                for n in range(6)]  # fmt: skip
    assert statuses == [201, 201, 201, 201, 429, 429]
    keys = real_redis.keys(f"{KEY_PREFIX}*")
    digest = hashlib.sha256(ip.encode()).hexdigest()[:32]
    assert any(digest in key for key in keys) and not any(ip in key for key in keys)
    assert not any("chat_session" in key for key in keys)


def test_limiter_storage_failure_is_never_a_500(generator):
    """Redis down: the store answers 503 as usual, the limiter's own calls count in memory."""
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(
        {"REDIS_URL": nobody, "RATE_LIMIT_ENABLED": "1", "RATE_LIMIT_CREATE": "2/minute"},
        redis_client=connect(load_settings({"REDIS_URL": nobody})),
        reply_generator=generator,
    )
    client = app.test_client()
    # A create's counters ride on its session access: its error is the store's, a 503.
    assert [client.post("/api/session/create").status_code for _ in range(3)] == [503] * 3
    # A send that starts a session is counted by the limiter's own call, which falls back
    # to memory, so the create limit still holds during the outage.
    assert [send(client).status_code for _ in range(3)] == [503, 503, 429]


@pytest.mark.redis
@pytest.mark.gunicorn
def test_limits_hold_across_gunicorn_workers(gunicorn_server, real_redis):
    server = gunicorn_server(
        WEB_CONCURRENCY="2", GUNICORN_THREADS="4", RATE_LIMIT_ENABLED="1",
        RATE_LIMIT_CREATE="5/minute", TRUSTED_PROXIES="1",
    )  # fmt: skip
    client_ip = f"192.0.2.{uuid.uuid4().int % 250 + 1}"  # via nginx-style X-Forwarded-For

    def create(_):
        return requests.post(
            f"{server.base_url}/api/session/create",
            headers={"X-Forwarded-For": client_ip},
            timeout=10,
        )

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(create, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [429] * 7
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    other = requests.post(
        f"{server.base_url}/api/session/create", headers={"X-Forwarded-For": "198.51.100.7"},
        timeout=10,
    )  # fmt: skip
    assert other.status_code == 201


def test_ratings_are_limited_per_ip_before_anything_is_written(make_app, fake_redis):
    client = limited_app(make_app, RATE_LIMIT_FEEDBACK="2/minute").test_client()
    sid = create(client).get_json()["sessionId"]
    assert send(client, sid).status_code == 200
    answer = client.get(f"/api/session/{sid}/history").get_json()["messages"][-1]["id"]
    path = f"/api/session/{sid}/messages/{answer}/feedback"

    def rate(rating, ip="10.0.0.1"):
        return client.post(path, json={"rating": rating}, **from_ip(ip))

    assert [rate("up").status_code, rate("down").status_code] == [200, 200]
    assert_rate_limited(rate("up"), 60)
    stored = client.get(f"/api/session/{sid}/history").get_json()["messages"][-1]
    assert stored["feedback"]["rating"] == "down", "the refused rating changed nothing"
    assert rate("up", ip="10.0.0.2").status_code == 200  # another client's own budget


def test_a_bad_feedback_limit_stops_start_up_naming_the_variable():
    with pytest.raises(ConfigError, match="RATE_LIMIT_FEEDBACK"):
        load_settings({"RATE_LIMIT_FEEDBACK": "often"})


def test_counter_keys_windows_and_texts_are_as_documented(make_app):
    import hashlib

    app = limited_app(make_app, RATE_LIMIT_SEND_SESSION="5/second;100/hour")
    limiter = resources(app).limiter
    sid = new_session_id()
    digest = hashlib.sha256(sid.encode()).hexdigest()[:32]
    with app.test_request_context("/", headers={"session-id": sid.upper()}):
        counters = limiter.send_session.counters()
    assert [(c.key, c.window, c.amount, c.rate) for c in counters] == [
        (f"chatbot_sessions:rate:{{session:{digest}}}:session:5/1s", 1, 5, "5 per 1 second"),
        (f"chatbot_sessions:rate:{{session:{digest}}}:session:100/3600s", 3600, 100,
         "100 per 1 hour"),
    ]  # fmt: skip
