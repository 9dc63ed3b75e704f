"""Idempotency records in the store: claims, leases, and the append that marks them done."""

from __future__ import annotations

import hashlib
import time

import pytest

from chatbot_sessions.exceptions import AlreadyRecorded
from chatbot_sessions.session_ids import new_session_id
from chatbot_sessions.store import (
    IdempotentWrite,
    NewMessage,
    SessionStore,
    idempotency_key,
    now_ms,
    session_keys,
)

KEY = "client-key-0123456789"


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def redis_client(request):
    return request.getfixturevalue("fake_redis" if request.param == "fakeredis" else "real_redis")


@pytest.fixture
def store(redis_client) -> SessionStore:
    return SessionStore(redis_client, ttl=300, max_messages=50, idempotency_ttl=60)


def turns(text: str) -> list[NewMessage]:
    at = now_ms()
    return [NewMessage("user", text, at), NewMessage("assistant", f"re: {text}", at + 1)]


def claim(store, owner="a", session_id=None, fp="fp1", lease_ms=10_000, proposed=None):
    return store.claim(
        KEY, fp, session_id=session_id, proposed_session_id=proposed, lease_ms=lease_ms, owner=owner
    )


def test_record_keys_hash_the_client_key_and_share_the_session_tag():
    sid = new_session_id()
    digest = hashlib.sha256(b"{x}*?").hexdigest()
    assert idempotency_key("{x}*?", sid) == f"chat_session:{{{sid}}}:idem:{digest}"
    assert idempotency_key("{x}*?", None) == f"chat_session:idem:{{{digest}}}"


def test_claim_lifecycle_new_busy_release_takeover_done_mismatch(store, redis_client):
    sid = new_session_id()
    store.create(sid)
    assert claim(store, "a", sid).status == "new"
    busy = claim(store, "b", sid)
    assert busy.status == "busy" and busy.lease_until_ms > now_ms()
    assert claim(store, "b", sid, fp="other").status == "mismatch"
    store.release(KEY, session_id=sid, owner="b")  # not the owner: no effect
    assert claim(store, "b", sid).status == "busy"
    store.release(KEY, session_id=sid, owner="a")
    assert claim(store, "b", sid).status == "new"  # b took over the lease
    store.append(sid, turns("q"), record=IdempotentWrite(KEY, "fp1", "result-1"))
    done = claim(store, "c", sid)
    assert (done.status, done.session_id, done.result) == ("done", sid, "result-1")
    assert claim(store, "c", sid, fp="other").status == "mismatch"
    record = idempotency_key(KEY, sid)
    assert 0 < redis_client.ttl(record) <= 60
    assert set(redis_client.hgetall(record)) == {"state", "fp", "sid", "result"}


def test_a_done_record_stops_a_second_append(store, redis_client):
    sid = new_session_id()
    store.create(sid)
    write = IdempotentWrite(KEY, "fp1", "r")
    assert store.append(sid, turns("q"), record=write) == 2
    with pytest.raises(AlreadyRecorded):
        store.append(sid, turns("q"), record=write)
    assert redis_client.llen(session_keys(sid)[1]) == 2


def test_crash_between_append_and_finish_recovers_the_same_session(store, redis_client):
    """A session-less send stored its exchange, then died before marking its record done."""
    proposed = new_session_id()
    first = claim(store, "a", proposed=proposed, lease_ms=1)
    assert (first.status, first.session_id) == ("new", proposed)
    store.append(proposed, turns("q"), create=True, record=IdempotentWrite(KEY, "fp1", "r1"))
    # ... crash: no finish(). Once the lease has lapsed a retry takes over the same id,
    time.sleep(0.01)
    again = claim(store, "b", proposed=new_session_id())
    assert (again.status, again.session_id) == ("new", proposed)
    # and its append finds the exchange already recorded instead of storing it twice.
    with pytest.raises(AlreadyRecorded):
        store.append(proposed, turns("q"), create=True, record=IdempotentWrite(KEY, "fp1", "r2"))
    assert claim(store, "b", proposed).result == "r1"
    assert redis_client.llen(session_keys(proposed)[1]) == 2


def test_finish_marks_the_session_less_record_done(store):
    sid = new_session_id()
    assert claim(store, "a", proposed=sid).status == "new"
    store.finish(KEY, IdempotentWrite(KEY, "fp1", "r1"), session_id=sid)
    done = claim(store, "b", proposed=new_session_id())
    assert (done.status, done.session_id, done.result) == ("done", sid, "r1")
