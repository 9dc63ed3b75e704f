"""Idempotency-Key on POST /api/send-message: replays, key reuse, concurrency, failures."""

from __future__ import annotations

import threading
import uuid

import pytest

from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.extensions import resources
from chatbot_sessions.sessions.keys import idempotency_key, session_keys, writes_key
from chatbot_sessions.sessions.store import SessionStore
from tests.support.api import history, send
from tests.support.processes import wait_until


def session_count(redis_client) -> int:
    return sum(1 for k in redis_client.scan_iter("chat_session:{*}") if k.endswith("}"))


def stored(redis_client) -> dict:
    """Every message list, idempotency record and write log (metadata changes on any access)."""
    read = {
        "list": lambda k: redis_client.lrange(k, 0, -1),
        "hash": redis_client.hgetall,
        "zset": lambda k: redis_client.zrange(k, 0, -1),
    }
    return {
        k: read[redis_client.type(k)](k)
        for k in redis_client.keys("*")
        if k.endswith((":messages", ":writes")) or ":idem" in k
    }


@pytest.fixture
def key() -> str:
    return str(uuid.uuid4())


def test_retry_in_a_session_replays_the_reply_and_stores_once(client, generator, key):
    sid = send(client, "first").get_json()["sessionId"]
    first = send(client, "second", sid, key)
    calls = len(generator.calls)
    again = send(client, "second", sid, key)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert again.headers["session-id"] == sid
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(generator.calls) == calls  # the reply was not generated again
    assert history(client, sid) == ["first", "answer to: first", "second", "answer to: second"]


def test_retry_without_a_session_returns_the_same_new_session(client, fake_redis, key):
    first = send(client, "hello", key=key)
    again = send(client, "hello", key=key)
    assert again.status_code == 200 and again.get_json() == first.get_json()
    sid = first.get_json()["sessionId"]
    assert again.headers["session-id"] == sid
    assert session_count(fake_redis) == 1
    assert history(client, sid) == ["hello", "answer to: hello"]


def test_unknown_session_header_is_scoped_like_no_session(client, fake_redis, key):
    unknown = str(uuid.uuid4())
    first = send(client, "hi", unknown, key).get_json()
    again = send(client, "hi", unknown, key).get_json()
    assert again == first and first["sessionId"] != unknown
    assert session_count(fake_redis) == 1


def test_same_key_with_a_different_question_is_422_and_stores_nothing(client, fake_redis):
    new_key, session_key = str(uuid.uuid4()), str(uuid.uuid4())
    created = send(client, "q1", key=new_key).get_json()["sessionId"]
    sid = send(client, "plain").get_json()["sessionId"]
    send(client, "q2", sid, session_key)
    keys_before = stored(fake_redis)
    # Without a session, in a session, and the new-session key reused inside its session.
    for other_sid, reused in ((None, new_key), (sid, session_key), (created, new_key)):
        response = send(client, "something else", other_sid, reused)
        body = response.get_json()
        assert response.status_code == 422, other_sid
        assert body["success"] is False and body["error"] == "idempotency_key_reused"
        assert stored(fake_redis) == keys_before
    # A retry of the original request is still answered from the record.
    assert send(client, "q1", created, new_key).headers["Idempotent-Replayed"] == "true"


def test_the_same_key_in_different_sessions_is_independent(client, key):
    a = send(client, "a").get_json()["sessionId"]
    b = send(client, "b").get_json()["sessionId"]
    assert send(client, "same", a, key).get_json()["sessionId"] == a
    assert send(client, "same", b, key).get_json()["sessionId"] == b
    assert history(client, a)[-2:] == history(client, b)[-2:] == ["same", "answer to: same"]


@pytest.mark.parametrize(
    "bad",
    ["short", "x" * 256, "has a space in it!!", "tab\there-is-16chars", "caf\u00e9-0123456789abc"],
)
def test_malformed_keys_are_422_and_store_nothing(client, fake_redis, bad):
    response = send(client, "hello", key=bad)
    body = response.get_json()
    assert response.status_code == 422
    assert body["error"] == "validation_error"
    assert "Idempotency-Key" in body["details"]["fields"]
    assert fake_redis.dbsize() == 0


def test_key_is_hashed_into_the_sessions_hash_tag_with_its_own_ttl(make_app, fake_redis):
    client = make_app({"IDEMPOTENCY_TTL": 120, "SESSION_TTL": 3600}).test_client()
    raw = "chat_session:{*}:evil-but-valid-ascii-key"
    sid = send(client, "hello").get_json()["sessionId"]
    send(client, "again", sid, raw)
    send(client, "fresh", key=raw)
    records = [k for k in fake_redis.keys("*") if ":idem" in k and fake_redis.type(k) == "hash"]
    # One in sid, one in the new session, and the session-less one naming the new session.
    assert len(records) == 3 and not any("evil" in k or "*" in k for k in records)
    in_session = [k for k in records if k.startswith(session_keys(sid)[0])]
    assert len(in_session) == 1 and in_session[0].startswith(f"chat_session:{{{sid}}}:idem:")
    assert sum(k.startswith("chat_session:idem:{") for k in records) == 1
    assert all(0 < fake_redis.ttl(k) <= 120 for k in records)


def test_a_failed_attempt_frees_the_key_for_an_immediate_retry(client, app, key, monkeypatch):
    sid = send(client, "first").get_json()["sessionId"]
    real_append = SessionStore.append

    def refused(self, *args, **kwargs):
        raise StoreUnavailable("ConnectionError: refused")

    monkeypatch.setattr(SessionStore, "append", refused)
    assert send(client, "second", sid, key).status_code == 503
    monkeypatch.setattr(SessionStore, "append", real_append)
    retry = send(client, "second", sid, key)  # not 409: the failed attempt gave up its lease
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
    assert history(client, sid)[-2:] == ["second", "answer to: second"]


@pytest.mark.parametrize("with_session", [True, False])
def test_retry_after_a_timeout_that_did_store_replays_instead_of_storing_twice(
    client, fake_redis, key, monkeypatch, with_session
):
    """The case redis-py will not retry: the append ran, but its answer never came back."""
    sid = send(client, "first").get_json()["sessionId"] if with_session else None
    real_append = SessionStore.append

    def stored_then_timed_out(self, *args, **kwargs):
        real_append(self, *args, **kwargs)
        raise StoreUnavailable("TimeoutError: Timeout reading from socket")

    monkeypatch.setattr(SessionStore, "append", stored_then_timed_out)
    assert send(client, "second", sid, key).status_code == 503
    monkeypatch.setattr(SessionStore, "append", real_append)
    retry = send(client, "second", sid, key)
    body = retry.get_json()
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert body["reply"] == "answer to: second"
    if with_session:
        assert body["sessionId"] == sid
    assert session_count(fake_redis) == 1
    assert history(client, body["sessionId"])[-2:] == ["second", "answer to: second"]
    assert history(client, body["sessionId"]).count("second") == 1


class GatedGenerator:
    """Blocks the first generate() until released, so a duplicate arrives mid-request."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def generate(self, question, history):
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        return self.inner.generate(question, history)


def run_in_thread(fn):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()))
    thread.start()
    return thread, result


def test_duplicate_in_flight_gets_409_with_retry_after_when_not_waiting(
    make_app, generator, fake_redis, key
):
    gated = GatedGenerator(generator)
    app = make_app({"IDEMPOTENCY_WAIT": 0})
    resources(app).chat.generator = gated
    client = app.test_client()
    first, result = run_in_thread(lambda: send(app.test_client(), "slow", key=key))
    assert gated.entered.wait(5)
    duplicate = send(client, "slow", key=key)
    assert duplicate.status_code == 409
    assert duplicate.get_json()["error"] == "idempotency_in_progress"
    assert duplicate.headers["Retry-After"] == "1"
    assert send(client, "other question", key=key).status_code == 422  # reuse, even in flight
    gated.release.set()
    first.join(10)
    original = result["value"]
    assert original.status_code == 200
    assert send(client, "slow", key=key).get_json() == original.get_json()
    assert session_count(fake_redis) == 1


def test_duplicate_in_flight_waits_for_the_original_reply(make_app, generator, fake_redis, key):
    app = make_app({"IDEMPOTENCY_WAIT": 5})
    sid = send(app.test_client(), "first").get_json()["sessionId"]
    gated = GatedGenerator(generator)
    resources(app).chat.generator = gated
    first, first_result = run_in_thread(lambda: send(app.test_client(), "slow", sid, key))
    assert gated.entered.wait(5)
    store = resources(app).store
    statuses: list[str] = []
    real_claim = store.claim
    store.claim = lambda *a, **kw: statuses.append((c := real_claim(*a, **kw)).status) or c
    second, second_result = run_in_thread(lambda: send(app.test_client(), "slow", sid, key))
    wait_until(lambda: "busy" in statuses, 5, what="the duplicate waiting")
    gated.release.set()
    first.join(10)
    second.join(10)
    a, b = first_result["value"], second_result["value"]
    assert a.status_code == b.status_code == 200
    assert a.get_json() == b.get_json()
    assert history(app.test_client(), sid).count("slow") == 1
    assert b.headers["Idempotent-Replayed"] == "true" and statuses[-1] == "done"


def tagged(redis_client, sid: str) -> list[str]:
    """Every key in the session's hash tag, by SCAN restricted to that tag."""
    return list(redis_client.scan_iter(match=f"chat_session:{{{sid}}}*", count=1000))


def test_delete_after_keyed_sends_leaves_nothing_and_retries_start_afresh(make_app, redis_client):
    client = make_app(
        {"SESSION_TTL": 3600, "IDEMPOTENCY_TTL": 120}, client=redis_client
    ).test_client()
    started, inside = str(uuid.uuid4()), str(uuid.uuid4())
    first = send(client, "hello", key=started)
    sid = first.get_json()["sessionId"]
    assert send(client, "more", sid, inside).status_code == 200
    sessionless = idempotency_key(started, None)
    assert redis_client.hget(sessionless, "sid") == sid
    assert 3590 < redis_client.ttl(writes_key(sid)) <= 3600  # the session's own TTL
    assert all(redis_client.ttl(k) > 0 for k in [*tagged(redis_client, sid), sessionless])

    assert client.delete(f"/api/session/{sid}").status_code == 200
    assert tagged(redis_client, sid) == [] and not redis_client.exists(sessionless)
    assert client.delete(f"/api/session/{sid}").status_code == 404

    # Retries of both keys get new answers in new sessions: the deleted one stays deleted,
    # and no deleted reply is replayed.
    again = send(client, "hello", key=started)
    moved = send(client, "more", sid, inside)
    for response in (again, moved):
        assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers
        assert response.headers["session-id"] != sid
    assert again.headers["session-id"] != moved.headers["session-id"]
    assert history(client, moved.headers["session-id"]) == ["more", "answer to: more"]
    assert tagged(redis_client, sid) == []
    assert client.get(f"/api/session/{sid}/validate").get_json()["valid"] is False


def test_a_session_deleted_mid_request_gets_no_record(client, app, fake_redis, key):
    """DELETE lands between the context read and the claim: the turn goes to a new session."""
    sid = send(client, "first").get_json()["sessionId"]
    store = resources(app).store
    real_claim = store.claim

    def delete_first(*args, **kwargs):
        if kwargs["session_id"] == sid:
            store.delete(sid)
        return real_claim(*args, **kwargs)

    store.claim = delete_first
    response = send(client, "second", sid, key)
    assert response.status_code == 200
    assert response.headers["session-id"] != sid
    assert tagged(fake_redis, sid) == []
    assert history(client, response.headers["session-id"]) == ["second", "answer to: second"]


def test_a_retry_after_its_session_expired_is_answered_afresh(make_app, redis_client):
    """SESSION_TTL shorter than IDEMPOTENCY_TTL: records never outlive their session, so a
    retry after the session expired is a new request in a new session, never a replay that
    names a dead session."""
    import time

    client = make_app({"SESSION_TTL": 1, "IDEMPOTENCY_TTL": 600}, client=redis_client).test_client()
    started, inside = str(uuid.uuid4()), str(uuid.uuid4())
    sid = send(client, "hello", key=started).headers["session-id"]
    assert send(client, "more", sid, inside).status_code == 200
    time.sleep(1.2)
    assert client.get(f"/api/session/{sid}/validate").get_json()["valid"] is False
    for response in (send(client, "hello", key=started), send(client, "more", sid, inside)):
        assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers
        fresh = response.headers["session-id"]
        assert fresh != sid
        assert client.get(f"/api/session/{fresh}/validate").get_json()["valid"] is True
    assert tagged(redis_client, sid) == []


def test_a_keyed_replay_names_the_same_answer_after_later_turns(client, key):
    sid = send(client, "first").get_json()["sessionId"]
    first = send(client, "second", sid, key).get_json()
    send(client, "third", sid)
    again = send(client, "second", sid, key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first["messageId"] == again.get_json()["messageId"] == 3  # not 5, the newest
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    assert messages[3] == {**messages[3], "id": 3, "content": "answer to: second"}


def test_a_keyed_replay_of_a_send_that_started_its_session_names_its_answer(client, key):
    first = send(client, "hello", key=key).get_json()
    send(client, "more", first["sessionId"])
    again = send(client, "hello", key=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first["messageId"] == again.get_json()["messageId"] == 1
