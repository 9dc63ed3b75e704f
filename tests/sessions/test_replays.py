"""Every store write is safe to run twice: a reply lost after Redis ran the script is
retried by the store, and the retry answers what the first run did and changes nothing.

The loss is simulated in the client (the script runs, then the call raises a connection
error); ``tests/faults/`` does the same through a real TCP proxy in front of redis-server.
"""

from __future__ import annotations

import time

import pytest
import redis as redis_lib

from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.store import ClaimStatus, IdempotentWrite, SessionStore
from tests.support.commands import lose_replies
from tests.support.turns import turns

KEY = "client-key-0123456789"


def contents(store: SessionStore, sid: str) -> list[str]:
    return [m["content"] for m in store.read(sid).messages]


def session_count(client) -> int:
    return sum(1 for _ in client.scan_iter(match="chat_session:{*}", count=1000))


def test_an_append_whose_reply_was_lost_is_stored_once(store, redis_client, monkeypatch):
    sid = new_session_id()
    store.create(sid)
    lost = lose_replies(monkeypatch, redis_client)
    assert store.append(sid, turns("q")) == 1  # the retry still names the answer
    assert len(lost) == 1  # the first run happened, and its answer never came back
    assert contents(store, sid) == ["q", "re: q"]


def test_a_lost_append_run_again_after_another_append_names_its_own_answer(
    store, redis_client, monkeypatch
):
    sid = new_session_id()
    store.create(sid)
    original = redis_client.execute_command

    def losing(*args, **options):
        result = original(*args, **options)
        if args[0] not in ("EVALSHA", "EVAL"):  # a SCRIPT LOAD after NOSCRIPT
            return result
        monkeypatch.setattr(redis_client, "execute_command", original)
        store.append(sid, turns("other"))  # another request's turn lands before the retry
        raise redis_lib.exceptions.ConnectionError("connection reset (test: reply lost)")

    monkeypatch.setattr(redis_client, "execute_command", losing)
    assert store.append(sid, turns("q")) == 1  # not 3, the newest answer
    assert contents(store, sid) == ["q", "re: q", "other", "re: other"]


def test_an_append_that_never_ran_is_stored_by_the_retry(store, redis_client, monkeypatch):
    sid = new_session_id()
    store.create(sid)
    lose_replies(monkeypatch, redis_client, ran=False)
    store.append(sid, turns("q"))
    assert contents(store, sid) == ["q", "re: q"]


def test_a_session_creating_append_makes_one_session(store, redis_client, monkeypatch):
    before = session_count(redis_client)
    sid = new_session_id()
    lose_replies(monkeypatch, redis_client)
    store.append(sid, turns("q"), create=True)  # no SessionIdTaken: the id is its own
    assert contents(store, sid) == ["q", "re: q"]
    assert session_count(redis_client) == before + 1


def test_a_create_whose_reply_was_lost_still_succeeds(store, redis_client, monkeypatch):
    sid = new_session_id()
    lose_replies(monkeypatch, redis_client)
    store.create(sid)
    assert store.read(sid).messages == []


def test_a_delete_whose_reply_was_lost_still_succeeds(store, redis_client, monkeypatch):
    sid = new_session_id()
    store.append(sid, turns("q"), create=True)
    lost = lose_replies(monkeypatch, redis_client)
    store.delete(sid)  # the retry finds nothing, because the first run deleted it
    assert lost and not list(redis_client.scan_iter(match=f"*{sid}*"))


def test_a_keyed_append_whose_reply_was_lost_is_not_taken_for_a_replay(
    store, redis_client, monkeypatch
):
    sid = new_session_id()
    store.create(sid)
    lose_replies(monkeypatch, redis_client)
    write = IdempotentWrite(KEY, "fp", "r")
    assert store.append(sid, turns("q"), record=write) == 1  # no AlreadyRecorded
    assert contents(store, sid) == ["q", "re: q"]
    done = store.claim(KEY, "fp", session_id=sid, lease_ms=1000, owner="other")
    assert (done.status, done.result, done.message_id) == (ClaimStatus.DONE, "r", 1)


def test_a_claim_whose_reply_was_lost_still_holds_the_lease(store, redis_client, monkeypatch):
    sid = new_session_id()
    store.create(sid)
    lose_replies(monkeypatch, redis_client)
    mine = store.claim(KEY, "fp", session_id=sid, lease_ms=10_000, owner="me")
    assert mine.status == ClaimStatus.NEW  # not BUSY: the lease it found is its own
    other = store.claim(KEY, "fp", session_id=sid, lease_ms=10_000, owner="someone-else")
    assert other.status == ClaimStatus.BUSY


def test_three_lost_connections_in_a_row_are_an_outage(store, redis_client, monkeypatch):
    sid = new_session_id()
    store.create(sid)
    lose_replies(monkeypatch, redis_client, count=3, ran=False)
    with pytest.raises(StoreUnavailable):
        store.append(sid, turns("q"))
    assert contents(store, sid) == []


def test_connection_errors_are_retried_twice_after_40_then_80_ms(store, redis_client, monkeypatch):
    """The schedule docs/reliability.md states."""
    sid = new_session_id()
    store.create(sid)
    slept: list[float] = []
    monkeypatch.setattr("chatbot_sessions.sessions.store.time.sleep", slept.append)
    lost = lose_replies(monkeypatch, redis_client, count=2, ran=False)
    store.append(sid, turns("q"))
    assert len(lost) == 2 and slept == pytest.approx([0.04, 0.08])
    assert contents(store, sid) == ["q", "re: q"]


def test_after_a_timeout_the_rest_of_the_scope_fails_at_once(store, redis_client, monkeypatch):
    """One bounded wait per request: a timed-out call spends it, later calls do not wait."""
    import redis as redis_lib

    from chatbot_sessions.sessions import budget

    sid = new_session_id()
    store.create(sid)
    original = redis_client.execute_command
    calls = []

    def slow(*args, **options):
        calls.append(args[0])
        raise redis_lib.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(redis_client, "execute_command", slow)
    budget.begin()
    try:
        with pytest.raises(StoreUnavailable):
            store.read(sid)
        with pytest.raises(StoreUnavailable, match="timed out"):
            store.append(sid, turns("q"))
        assert calls == ["EVALSHA"]  # one try (timeouts are not retried), then none at all
    finally:
        budget.end()
    monkeypatch.setattr(redis_client, "execute_command", original)
    store.append(sid, turns("q"))  # outside any budget nothing is cut short
    assert contents(store, sid) == ["q", "re: q"]


def test_a_connection_that_hung_before_failing_is_not_retried(store, redis_client, monkeypatch):
    """A stalled server that closes the connection after a wait spends the request's wait."""
    from chatbot_sessions.sessions import budget

    sid = new_session_id()
    store.create(sid)
    calls = []

    def hangs_then_resets(*args, **options):
        calls.append(args[0])
        time.sleep(0.15)
        raise redis_lib.exceptions.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(redis_client, "execute_command", hangs_then_resets)
    budget.begin()
    try:
        with pytest.raises(StoreUnavailable):
            store.read(sid)
        assert calls == ["EVALSHA"] and budget.spent()
    finally:
        budget.end()
