"""The repository on fakeredis and on a real Redis: atomicity, TTLs, trimming, paging."""

from __future__ import annotations

import time

import pytest

from chatbot_sessions.domain import NewMessage, Source
from chatbot_sessions.exceptions import SessionIdTaken, SessionNotFound, StoreUnavailable
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.keys import idempotency_key, session_keys
from chatbot_sessions.sessions.store import IdempotentWrite, SessionStore
from chatbot_sessions.timestamps import now_ms
from tests.support.commands import record_commands
from tests.support.threads import run_in_threads


@pytest.fixture
def store(redis_client) -> SessionStore:
    return SessionStore(redis_client, ttl=300, max_messages=6)


def pair(n: int) -> list[NewMessage]:
    at = now_ms()
    return [NewMessage("user", f"q{n}", at), NewMessage("assistant", f"a{n}", at + 1)]


def test_keys_share_one_cluster_hash_tag_and_prefix():
    sid = new_session_id()
    meta, messages, writes, feedback = session_keys(sid)
    assert meta == f"chat_session:{{{sid}}}" and messages == f"chat_session:{{{sid}}}:messages"
    assert (writes, feedback) == (f"{meta}:writes", f"{meta}:feedback")


@pytest.mark.parametrize("bad", ["*", "chat_session:*", "", "not-a-uuid", "{x}", "1" * 36])
def test_non_canonical_ids_never_become_keys(store, redis_client, monkeypatch, bad):
    sent = record_commands(monkeypatch, redis_client)
    with pytest.raises(SessionNotFound):
        store.read(bad)
    with pytest.raises(SessionNotFound):
        store.delete(bad)
    with pytest.raises(SessionNotFound):
        store.append(bad, pair(1))
    with pytest.raises(SessionNotFound):
        store.claim("client-key-0123456789", "fp", session_id=bad, lease_ms=1000, owner="o")
    assert store.touch(bad) is False
    assert sent == []  # not one command: a malformed id never reaches Redis at all


def test_command_recorder_sees_script_calls(store, redis_client, monkeypatch):
    sent = record_commands(monkeypatch, redis_client)
    store.touch(new_session_id())
    assert sent and sent[0][0] in ("EVALSHA", "EVAL")  # so an empty record above means something


def test_ids_come_back_canonical_whatever_the_case_given(store):
    sid = new_session_id()
    write = IdempotentWrite("client-key-0123456789", "fp", "result")
    store.append(sid.upper(), pair(1), create=True, record=write)
    assert store.read(sid.upper()).session_id == sid
    replay = store.claim(write.key, "fp", session_id=sid.upper(), lease_ms=1000, owner="o")
    assert replay.status == "done" and replay.session_id == sid


def test_create_then_read_empty_session(store):
    sid = new_session_id()
    store.create(sid)
    page = store.read(sid)
    assert page.messages == [] and page.next_cursor is None
    assert page.created_at.endswith("Z") and page.last_activity >= page.created_at


def test_append_keeps_order_and_shape(store):
    sid = new_session_id()
    store.create(sid)
    store.append(sid, pair(1))
    store.append(
        sid,
        [
            NewMessage("user", "q2", now_ms()),
            NewMessage("assistant", "a2", now_ms(), (Source("T", "t.md", 1.23456),)),
        ],
    )
    messages = store.read(sid).messages
    assert [m["content"] for m in messages] == ["q1", "a1", "q2", "a2"]
    assert [m["type"] for m in messages] == ["user", "assistant"] * 2
    assert set(messages[0]) == {"id", "type", "content", "timestamp"}
    assert messages[3]["sources"] == [{"title": "T", "source": "t.md", "score": 1.2346}]


def test_append_to_missing_session_does_not_resurrect_it(store, redis_client):
    sid = new_session_id()
    store.create(sid)
    store.delete(sid)
    with pytest.raises(SessionNotFound):
        store.append(sid, pair(1))
    assert redis_client.exists(*session_keys(sid)) == 0


def test_append_with_create_refuses_an_existing_id(store):
    sid = new_session_id()
    store.create(sid)
    with pytest.raises(SessionIdTaken):
        store.append(sid, pair(1), create=True)
    assert store.read(sid).messages == []


def test_trims_oldest_beyond_maximum_atomically(store, redis_client):
    sid = new_session_id()
    store.append(sid, pair(0), create=True)
    for n in range(1, 5):
        store.append(sid, pair(n))
    page = store.read(sid)
    assert [m["content"] for m in page.messages] == ["q2", "a2", "q3", "a3", "q4", "a4"]
    assert store.append(sid, pair(5)) == 11  # ids go on counting past the trims
    assert redis_client.llen(session_keys(sid)[1]) == 6
    assert page.next_cursor is None  # nothing older is still stored


def test_every_access_refreshes_ttl_of_all_keys(redis_client):
    store = SessionStore(redis_client, ttl=100, max_messages=10, idempotency_ttl=30)
    sid = new_session_id()
    # A keyed send logs its record in the write log (the record keeps its own window).
    first = IdempotentWrite("client-key-0123456789", "fp", "result")
    store.append(sid, pair(1), create=True, record=first)
    record = idempotency_key(first.key, sid)
    store.rate(sid, 1, "up")  # the feedback key follows the same rule
    keys = session_keys(sid)
    assert redis_client.exists(*keys) == 4
    for access in (
        lambda: store.read(sid),
        lambda: store.touch(sid),
        lambda: store.append(sid, pair(2)),
        lambda: store.rate(sid, 3, "down"),
    ):
        for key in keys:
            redis_client.expire(key, 5)
        redis_client.expire(record, 7)
        access()
        assert [95 <= redis_client.ttl(key) <= 100 for key in keys] == [True] * 4
        assert redis_client.ttl(record) <= 7  # replay caches are not extended


def test_records_never_outlive_their_session(redis_client):
    store = SessionStore(redis_client, ttl=100, max_messages=10, idempotency_ttl=1000)
    sid = new_session_id()
    store.append(sid, pair(1), create=True, record=IdempotentWrite("k" * 16, "fp", "r"))
    record = idempotency_key("k" * 16, sid)
    assert 0 < redis_client.ttl(record) <= 100  # min(IDEMPOTENCY_TTL, SESSION_TTL)
    assert redis_client.ttl(record) <= redis_client.ttl(session_keys(sid)[0])


def test_no_session_key_exists_without_ttl(store, redis_client):
    sid = new_session_id()
    store.create(sid)
    store.append(sid, pair(1))
    store.read(sid)
    for key in redis_client.keys("chat_session:*"):
        assert redis_client.ttl(key) > 0, key


def test_read_updates_last_activity(store):
    sid = new_session_id()
    store.create(sid)
    first = store.read(sid).last_activity
    time.sleep(0.01)
    assert store.read(sid).last_activity > first


def test_paging_with_limit_and_cursor_survives_appends(redis_client):
    store = SessionStore(redis_client, ttl=300, max_messages=100)
    sid = new_session_id()
    store.append(sid, pair(0), create=True)
    for n in range(1, 5):
        store.append(sid, pair(n))  # 10 messages: q0 a0 ... q4 a4
    newest = store.read(sid, limit=4)
    assert [m["content"] for m in newest.messages] == ["q3", "a3", "q4", "a4"]
    store.append(sid, pair(5))  # a new pair must not shift the cursor
    older = store.read(sid, limit=4, before=newest.next_cursor)
    assert [m["content"] for m in older.messages] == ["q1", "a1", "q2", "a2"]
    oldest = store.read(sid, limit=4, before=older.next_cursor)
    assert [m["content"] for m in oldest.messages] == ["q0", "a0"]
    assert oldest.next_cursor is None


def test_message_ids_are_absolute_positions_stable_across_trims_and_pages(store):
    sid = new_session_id()
    store.append(sid, pair(0), create=True)
    for n in range(1, 5):
        store.append(sid, pair(n))  # 10 appended, the newest 6 kept (max_messages=6)
    page = store.read(sid)
    assert [m["id"] for m in page.messages] == [4, 5, 6, 7, 8, 9]
    assert [m["content"] for m in page.messages][:2] == ["q2", "a2"]
    newest = store.read(sid, limit=2)
    assert [m["id"] for m in newest.messages] == [8, 9] and newest.next_cursor == 8
    older = store.read(sid, limit=2, before=newest.next_cursor)
    assert [m["id"] for m in older.messages] == [6, 7] and older.next_cursor == 6

    store.append(sid, pair(5))  # trims q2 a2: every kept message keeps its id
    after = {m["id"]: m["content"] for m in store.read(sid).messages}
    assert after == {6: "q3", 7: "a3", 8: "q4", 9: "a4", 10: "q5", 11: "a5"}
    assert {m["id"]: m["content"] for m in page.messages if m["id"] >= 6}.items() <= after.items()


def test_delete_removes_every_key(store, redis_client):
    sid = new_session_id()
    store.append(sid, pair(1), create=True)
    store.delete(sid)
    assert redis_client.exists(*session_keys(sid)) == 0
    with pytest.raises(SessionNotFound):
        store.delete(sid)


def test_concurrent_appends_lose_and_reorder_nothing(redis_client):
    store = SessionStore(redis_client, ttl=300, max_messages=1000)
    sid = new_session_id()
    store.create(sid)

    answer_ids: dict[str, int | None] = {}

    def writer(t: int) -> None:
        for i in range(20):
            at = now_ms()
            answer_ids[f"{t}:{i}"] = store.append(
                sid, [NewMessage("user", f"{t}:{i}", at), NewMessage("assistant", f"{t}:{i}", at)]
            )

    run_in_threads(writer, 8, indexed=True)
    messages = store.read(sid).messages
    assert len(messages) == 8 * 20 * 2
    # Each append named its own answer, whatever the others did meanwhile.
    assert answer_ids == {m["content"]: m["id"] for m in messages[1::2]}
    for user, assistant in zip(messages[::2], messages[1::2], strict=True):
        assert user["type"] == "user" and assistant["type"] == "assistant"
        assert user["content"] == assistant["content"]  # pairs never interleave
    for t in range(8):
        mine = [
            int(m["content"].split(":")[1])
            for m in messages[::2]
            if m["content"].startswith(f"{t}:")
        ]
        assert mine == list(range(20))


def test_redis_errors_become_store_unavailable_quickly():
    from chatbot_sessions.config import load_settings
    from chatbot_sessions.sessions.connection import connect

    # The service's own client (no hidden redis-py retries) against a port nobody serves.
    dead = connect(load_settings({"REDIS_URL": "redis://127.0.0.1:1/0"}))
    store = SessionStore(dead, ttl=10, max_messages=10)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.read(new_session_id())
    with pytest.raises(StoreUnavailable):
        store.create(new_session_id())
    assert time.monotonic() - started < 1.0  # two calls, each three quick attempts


@pytest.mark.parametrize("stopped", [False, True])
@pytest.mark.parametrize("degraded", [False, True])
def test_entries_keep_the_stopped_and_degraded_marks(stopped, degraded):
    from chatbot_sessions.sessions.codec import decode_message, encode_message

    sources = (Source("T", "t.md", 0.5),)
    entry = encode_message(NewMessage("assistant", "~!|x", 1, sources, stopped, degraded))
    message = decode_message(entry, 0)
    assert message["content"] == "~!|x" and message["timestamp"] == "1970-01-01T00:00:00.001Z"
    assert message.get("stopped", False) is stopped
    assert message.get("degraded", False) is degraded
    assert len(entry) - len(encode_message(NewMessage("assistant", "~!|x", 1, sources))) == (
        stopped + degraded
    )  # one byte per mark, none when unset


@pytest.mark.parametrize("content", ["", "a|b|c", "line\nbreak\n", '\u2603 <b>x</b> "q"', "U1|x"])
@pytest.mark.parametrize("sources", [(), (Source("T|i\nt", "p|q.md", 0.5),)])
def test_entries_round_trip_any_content(content, sources):
    from chatbot_sessions.sessions.codec import decode_message, encode_message

    at = 1_764_105_282_123
    message = decode_message(encode_message(NewMessage("assistant", content, at, sources)), 7)
    assert message["content"] == content and message["type"] == "assistant"
    assert message["id"] == 7
    assert message["timestamp"] == "2025-11-25T21:14:42.123Z"
    assert message.get("sources", []) == [
        {"title": s.title, "source": s.source, "score": s.score} for s in sources
    ]


@pytest.mark.parametrize("stopped", [False, True])
@pytest.mark.parametrize("degraded", [False, True])
def test_idempotency_records_keep_the_whole_reply(stopped, degraded):
    from chatbot_sessions.domain import Reply
    from chatbot_sessions.sessions.codec import decode_reply, encode_reply

    reply = Reply("text", (Source("T", "t.md", 0.123456789),), degraded, stopped)
    assert decode_reply(encode_reply(reply)) == reply
    # A record an older release wrote (no stopped item) still replays, as not stopped.
    assert decode_reply('["text",[],true]') == Reply("text", (), True, False)
