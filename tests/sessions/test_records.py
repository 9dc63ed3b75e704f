"""Idempotency records in the store: claims, leases, and the append that marks them done."""

from __future__ import annotations

import hashlib
import time

import pytest

from chatbot_sessions.exceptions import AlreadyRecorded, SessionNotFound
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.keys import idempotency_key, session_keys, writes_key
from chatbot_sessions.sessions.store import IdempotentWrite, SessionStore
from chatbot_sessions.timestamps import now_ms
from tests.support.commands import record_commands
from tests.support.turns import turns

KEY = "client-key-0123456789"


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
    assert store.append(sid, turns("q"), record=IdempotentWrite(KEY, "fp1", "result-1")) == 1
    done = claim(store, "c", sid)
    assert (done.status, done.session_id, done.result) == ("done", sid, "result-1")
    assert done.message_id == 1  # the answer's id, kept for the replay
    assert claim(store, "c", sid, fp="other").status == "mismatch"
    record = idempotency_key(KEY, sid)
    assert 0 < redis_client.ttl(record) <= 60
    assert set(redis_client.hgetall(record)) == {"state", "fp", "sid", "result", "mid"}


def test_a_done_record_stops_a_second_append(store, redis_client):
    sid = new_session_id()
    store.create(sid)
    write = IdempotentWrite(KEY, "fp1", "r")
    store.append(sid, turns("q"), record=write)
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
    recorded = claim(store, "b", proposed)
    assert (recorded.result, recorded.message_id) == ("r1", 1)
    assert redis_client.llen(session_keys(proposed)[1]) == 2


def test_finish_marks_the_session_less_record_done(store):
    sid = new_session_id()
    assert claim(store, "a", proposed=sid).status == "new"
    store.finish(KEY, IdempotentWrite(KEY, "fp1", "r1"), session_id=sid, message_id=7)
    done = claim(store, "b", proposed=new_session_id())
    assert (done.status, done.session_id, done.result, done.message_id) == ("done", sid, "r1", 7)


def test_a_record_written_before_records_kept_the_answer_id_replays_without_one(
    store, redis_client
):
    sid = new_session_id()
    store.create(sid)
    store.append(sid, turns("q"), record=IdempotentWrite(KEY, "fp1", "r1"))
    redis_client.hdel(idempotency_key(KEY, sid), "mid")  # as an older version wrote it
    done = claim(store, "b", sid)
    assert (done.status, done.result, done.message_id) == ("done", "r1", None)


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


def record_names(redis_client, sid: str) -> set[str]:
    """The key names in the session's write log (its write ids start with ``w:``)."""
    return {m for m in redis_client.zrange(writes_key(sid), 0, -1) if not m.startswith("w:")}


def test_records_join_the_write_log_which_expires_with_the_session(store, redis_client):
    sid = keyed_session(store)
    assert writes_key(sid) == f"chat_session:{{{sid}}}:writes"
    # The session's own record and the session-less record that reserved the id.
    assert record_names(redis_client, sid) == {
        idempotency_key(KEY, sid),
        idempotency_key(KEY, None),
    }
    other = "another-client-key-42"
    assert store.claim(other, "fp", session_id=sid, lease_ms=1000, owner="x").status == "new"
    assert idempotency_key(other, sid) in record_names(redis_client, sid)
    assert 290 < redis_client.ttl(writes_key(sid)) <= 300  # the session's TTL, like meta
    for key in [*keys_of(redis_client, sid), idempotency_key(KEY, None)]:
        assert redis_client.ttl(key) > 0, key  # no key without a TTL


def test_records_expire_no_later_than_the_session(redis_client):
    store = SessionStore(redis_client, ttl=30, max_messages=50, idempotency_ttl=600)
    sid = keyed_session(store)
    for record in (idempotency_key(KEY, sid), idempotency_key(KEY, None)):
        assert 0 < redis_client.ttl(record) <= redis_client.ttl(session_keys(sid)[0]) <= 30


def test_the_write_log_forgets_write_ids_past_their_window(store, redis_client):
    sid = new_session_id()
    store.create(sid)
    redis_client.zadd(writes_key(sid), {"w:stale": 1})  # a write id long past its window
    store.append(sid, turns("q"))
    marks = redis_client.zrange(writes_key(sid), 0, -1)
    assert "w:stale" not in marks and len(marks) == 2  # the create's and the append's


def test_delete_removes_the_session_every_record_and_the_write_log(store, redis_client):
    sid = keyed_session(store)
    store.append(sid, turns("more"), record=IdempotentWrite("second-key-0123456", "fp", "r"))
    pending = "pending-key-0123456"
    store.claim(pending, "fp", session_id=sid, lease_ms=10_000, owner="x")
    keep = keyed_session(store, key="a-key-of-another-session")
    assert len(keys_of(redis_client, sid)) == 6  # meta, messages, 3 records, write log
    store.delete(sid)
    assert keys_of(redis_client, sid) == set()
    assert not redis_client.exists(idempotency_key(KEY, None))
    assert len(keys_of(redis_client, keep)) == 4  # another session is untouched
    assert redis_client.exists(idempotency_key("a-key-of-another-session", None))
    with pytest.raises(SessionNotFound):
        store.delete(sid)


def test_on_a_cluster_the_session_less_record_goes_in_a_second_command(redis_client, monkeypatch):
    # A store that behaves as on a cluster: its delete script must not leave the session's
    # slot, so it names the session-less record and a second command deletes it.
    store = SessionStore(
        redis_client, ttl=300, max_messages=50, idempotency_ttl=60, single_node=False
    )
    sid = keyed_session(store)
    sessionless = idempotency_key(KEY, None)
    sent = record_commands(monkeypatch, redis_client)
    store.delete(sid)
    assert sent[0][0] == "EVALSHA" and sent[-1] == ("DEL", sessionless)
    assert keys_of(redis_client, sid) == set() and not redis_client.exists(sessionless)


def test_delete_ignores_log_entries_outside_the_session(store, redis_client):
    """Only our scripts write the log; even so, delete never strays from its prefixes."""
    sid = keyed_session(store)
    redis_client.set("unrelated", "1")
    redis_client.zadd(writes_key(sid), {"unrelated": now_ms() + 60_000})
    store.delete(sid)
    assert redis_client.get("unrelated") == "1"
    redis_client.delete("unrelated")


def test_a_write_log_alone_is_not_a_session(store, redis_client):
    sid = new_session_id()
    redis_client.zadd(writes_key(sid), {idempotency_key(KEY, sid): now_ms() + 60_000})
    redis_client.expire(writes_key(sid), 60)
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
