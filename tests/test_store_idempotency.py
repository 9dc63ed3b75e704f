"""Idempotency records in the store: claims, leases, and the append that marks them done."""

from __future__ import annotations

import hashlib
import time

import pytest

from chatbot_sessions.exceptions import AlreadyRecorded, SessionNotFound
from chatbot_sessions.session_ids import new_session_id
from chatbot_sessions.store import (
    SESSIONLESS_RECORD_PREFIX,
    IdempotentWrite,
    NewMessage,
    SessionStore,
    idempotency_key,
    registry_key,
    session_keys,
)
from chatbot_sessions.timestamps import now_ms

KEY = "client-key-0123456789"


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


def keys_of(redis_client, sid: str) -> set[str]:
    """Every key in the session's hash tag, found by SCAN (tests only: never on requests)."""
    return set(redis_client.scan_iter(match=f"chat_session:{{{sid}}}*", count=1000))


def keyed_session(store, key: str = KEY) -> str:
    """A session started by a keyed send, as chat.py does it: claim, append, finish."""
    sid = new_session_id()
    started = store.claim(
        key, "fp1", session_id=None, proposed_session_id=sid, lease_ms=10_000, owner="a"
    )
    assert started.status == "new"
    write = IdempotentWrite(key, "fp1", "r1")
    store.append(sid, turns("q"), create=True, record=write)
    store.finish(key, write, session_id=sid)
    return sid


def test_records_join_the_registry_which_outlives_them(store, redis_client):
    sid = keyed_session(store)
    registry = registry_key(sid)
    assert registry == f"chat_session:{{{sid}}}:idem"
    # The session's own record and the session-less record that reserved the id.
    assert redis_client.smembers(registry) == {
        idempotency_key(KEY, sid),
        idempotency_key(KEY, None),
    }
    other = "another-client-key-42"
    assert store.claim(other, "fp", session_id=sid, lease_ms=1000, owner="x").status == "new"
    assert idempotency_key(other, sid) in redis_client.smembers(registry)
    # max(SESSION_TTL 300, IDEMPOTENCY_TTL 60): as long as the session, longer than any record
    assert 60 < redis_client.ttl(registry) <= 300
    for key in [*keys_of(redis_client, sid), idempotency_key(KEY, None)]:
        assert redis_client.ttl(key) > 0, key  # no key without a TTL


def test_registry_ttl_covers_records_when_they_outlive_the_session(redis_client):
    store = SessionStore(redis_client, ttl=30, max_messages=50, idempotency_ttl=600)
    sid = keyed_session(store)
    assert 30 < redis_client.ttl(registry_key(sid)) <= 600
    assert redis_client.ttl(idempotency_key(KEY, sid)) <= redis_client.ttl(registry_key(sid))


def test_delete_removes_the_session_every_record_and_the_registry(store, redis_client):
    sid = keyed_session(store)
    store.append(sid, turns("more"), record=IdempotentWrite("second-key-0123456", "fp", "r"))
    pending = "pending-key-0123456"
    store.claim(pending, "fp", session_id=sid, lease_ms=10_000, owner="x")
    keep = keyed_session(store, key="a-key-of-another-session")
    assert len(keys_of(redis_client, sid)) == 6  # meta, messages, 3 records, registry
    store.delete(sid)
    assert keys_of(redis_client, sid) == set()
    assert not redis_client.exists(idempotency_key(KEY, None))
    assert len(keys_of(redis_client, keep)) == 4  # another session is untouched
    assert redis_client.exists(idempotency_key("a-key-of-another-session", None))
    with pytest.raises(SessionNotFound):
        store.delete(sid)


def test_on_a_cluster_the_session_less_record_goes_in_a_second_command(store, redis_client):
    sid = keyed_session(store)
    sessionless = idempotency_key(KEY, None)
    keys = [*session_keys(sid), registry_key(sid)]
    # What the script does when it must not leave the session's slot: it names the record.
    removed, *elsewhere = store._delete(keys=keys, args=[0, SESSIONLESS_RECORD_PREFIX])
    assert (removed, elsewhere) == (3, [sessionless])
    assert redis_client.exists(sessionless) and keys_of(redis_client, sid) == set()
    # ... and delete() sends that second command.
    redis_client.delete(sessionless)
    sid = keyed_session(store)
    store._one_node = False
    store.delete(sid)
    assert keys_of(redis_client, sid) == set() and not redis_client.exists(sessionless)


def test_delete_ignores_registry_entries_outside_the_session(store, redis_client):
    """Only our scripts write the registry; even so, delete never strays from its prefixes."""
    sid = keyed_session(store)
    redis_client.set("unrelated", "1")
    redis_client.sadd(registry_key(sid), "unrelated")
    store.delete(sid)
    assert redis_client.get("unrelated") == "1"
    redis_client.delete("unrelated")


def test_a_registry_alone_is_not_a_session(store, redis_client):
    sid = new_session_id()
    redis_client.sadd(registry_key(sid), idempotency_key(KEY, sid))
    redis_client.expire(registry_key(sid), 60)
    with pytest.raises(SessionNotFound):
        store.delete(sid)
    assert keys_of(redis_client, sid) == set()


def test_finish_never_recreates_a_record_deleted_with_its_session(store, redis_client):
    sid = new_session_id()
    assert claim(store, "a", proposed=sid).status == "new"
    write = IdempotentWrite(KEY, "fp1", "r1")
    store.append(sid, turns("q"), create=True, record=write)
    store.delete(sid)  # the new session is deleted before its sender marked the record done
    store.finish(KEY, write, session_id=sid)
    assert not redis_client.exists(idempotency_key(KEY, None))
    assert claim(store, "b", proposed=new_session_id()).status == "new"  # a retry starts anew


def test_claim_in_a_deleted_session_is_gone_and_writes_nothing(store, redis_client):
    sid = keyed_session(store)
    store.delete(sid)
    assert claim(store, "a", sid).status == "gone"
    assert keys_of(redis_client, sid) == set()
