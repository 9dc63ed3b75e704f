"""SessionAdmin on fakeredis and a real Redis: scans, export/restore, TTL surgery, purge."""

from __future__ import annotations

import pytest

from chatbot_sessions.domain import NewMessage, Source
from chatbot_sessions.sessions.admin import SessionAdmin
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.keys import META_PATTERN, session_keys
from chatbot_sessions.sessions.store import IdempotentWrite, SessionStore
from chatbot_sessions.timestamps import iso_from_ms, ms_from_iso, now_ms


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def whole_redis(request):
    """Keyspace-wide tests: fakeredis or a redis-server of our own, never a shared one."""
    name = "fake_redis" if request.param == "fakeredis" else "private_redis"
    return request.getfixturevalue(name)


def make(client, ttl: int = 300) -> tuple[SessionStore, SessionAdmin]:
    store = SessionStore(client, ttl=ttl, max_messages=10_000)
    return store, SessionAdmin(store)


def new_session(store: SessionStore, turns: int = 1) -> str:
    sid = new_session_id()
    store.create(sid)
    for n in range(turns):
        at = now_ms()
        store.append(
            sid,
            [
                NewMessage("user", f"q{n} ✓ «ünïcode»", at),
                NewMessage(
                    "assistant",
                    f"a{n}",
                    at + 1,
                    (Source("Guide", "g.md", 1.2346),),
                    degraded=n % 2 == 1,
                ),
            ],
        )
    return sid


@pytest.mark.parametrize("ms", [0, 1, 999, 1_000, 1_700_000_000_123, 2**41 + 7])
def test_iso_timestamps_convert_back_to_the_same_millisecond(ms):
    assert ms_from_iso(iso_from_ms(ms)) == ms


def test_timestamps_without_a_zone_are_rejected():
    with pytest.raises(ValueError):
        ms_from_iso("2024-01-01T00:00:00")


def test_scans_see_meta_keys_only(whole_redis):
    store, admin = make(whole_redis)
    sids = {new_session(store) for _ in range(3)}
    whole_redis.set("chat_session:{not-a-uuid}", "x")  # fits the glob, is not a session
    whole_redis.set(f"other:{{{next(iter(sids))}}}", "x")
    assert set(admin.iter_session_ids()) == sids
    assert admin.count() == 3
    assert META_PATTERN == "chat_session:{*}"


def test_export_is_read_only_and_restore_round_trips_exactly(redis_client):
    store, admin = make(redis_client, ttl=500)
    sid = new_session(store, turns=3)
    meta, messages, *_ = session_keys(sid)
    redis_client.expire(meta, 100)
    before = (redis_client.hgetall(meta), redis_client.lrange(messages, 0, -1))

    document = admin.export(sid)
    assert redis_client.ttl(meta) <= 100  # no TTL refresh by an inspection
    assert document["seq"] == 6 and len(document["messages"]) == 6
    assert [m["id"] for m in document["messages"]] == [0, 1, 2, 3, 4, 5]  # as history numbers
    assert [m.get("degraded", False) for m in document["messages"]] == [False] * 3 + [
        True,
        False,
        False,
    ]
    assert document["messages"][1]["sources"] == [
        {"title": "Guide", "source": "g.md", "score": 1.2346}
    ]
    assert 90_000 < document["ttlMs"] <= 100_000

    redis_client.delete(meta, messages)
    assert admin.restore(document) is True
    assert (redis_client.hgetall(meta), redis_client.lrange(messages, 0, -1)) == before
    assert abs(redis_client.pttl(meta) - document["ttlMs"]) < 2000
    assert abs(redis_client.pttl(messages) - document["ttlMs"]) < 2000
    again = admin.export(sid)
    assert {**again, "ttlMs": 0} == {**document, "ttlMs": 0}


def test_restore_of_a_long_session_goes_past_lua_unpack_limits(redis_client):
    store, admin = make(redis_client)
    sid = new_session(store, turns=600)  # 1200 messages: two RPUSH chunks
    document = admin.export(sid)
    redis_client.delete(*session_keys(sid))
    assert admin.restore(document)
    assert admin.export(sid)["messages"] == document["messages"]


def test_restore_refuses_to_overwrite_unless_asked(redis_client):
    store, admin = make(redis_client)
    sid = new_session(store, turns=2)
    document = admin.export(sid)
    store.append(sid, [NewMessage("user", "later", now_ms())])
    assert admin.restore(document) is False
    assert len(admin.export(sid)["messages"]) == 5  # untouched
    assert admin.restore(document, replace=True) is True
    assert admin.export(sid)["messages"] == document["messages"]


def test_an_empty_session_round_trips_without_a_messages_key(redis_client):
    store, admin = make(redis_client)
    sid = new_session(store, turns=0)
    document = admin.export(sid)
    redis_client.delete(*session_keys(sid))
    assert admin.restore(document)
    assert redis_client.exists(session_keys(sid)[1]) == 0
    assert admin.export(sid)["messages"] == []


def test_set_ttl_changes_every_key_and_persist_lasts_until_next_use(redis_client):
    store, admin = make(redis_client, ttl=300)
    sid, gone = new_session(store), new_session_id()
    store.rate(sid, 1, "up")  # so the session has all four keys
    keys = session_keys(sid)
    assert admin.set_ttl([sid, gone, "not-an-id"], 40) == [gone, "not-an-id"]
    assert all(0 < redis_client.ttl(k) <= 40 for k in keys)
    assert admin.set_ttl([sid], None) == []
    assert [redis_client.ttl(k) for k in keys] == [-1, -1, -1, -1]
    assert admin.export(sid)["ttlMs"] is None
    store.read(sid)  # the API's next access re-arms the normal TTL
    assert all(290 < redis_client.ttl(k) <= 300 for k in keys)


def test_rated_answers_come_with_their_question_and_in_order(whole_redis):
    store, admin = make(whole_redis)
    rated, unrated = new_session(store, turns=3), new_session(store, turns=1)
    store.rate(rated, 5, "up")
    store.rate(rated, 3, "down", "wrong «page»")
    store.rate(rated, 1, "up", "first")
    store.rate(rated, 1, "down")  # replaces the first rating
    whole_redis.hset("chat_session:{not-a-uuid}:feedback", "1", "x")  # fits the glob only
    meta = session_keys(rated)[0]
    whole_redis.expire(meta, 100)

    found = list(admin.rated_answers())
    assert [(r["sessionId"], r["messageId"], r["rating"]) for r in found] == [
        (rated, 1, "down"), (rated, 3, "down"), (rated, 5, "up"),
    ]  # fmt: skip
    assert found[1] == {
        "sessionId": rated, "messageId": 3, "rating": "down", "comment": "wrong «page»",
        "question": "q1 ✓ «ünïcode»", "answer": "a1",
        "sources": [{"title": "Guide", "source": "g.md", "score": 1.2346}],
        "degraded": True, "at": found[1]["at"],
    }  # fmt: skip
    assert found[0]["degraded"] is False and found[0]["comment"] is None
    assert abs(ms_from_iso(found[0]["at"]) - now_ms()) < 60_000
    assert [r["messageId"] for r in admin.rated_answers("up")] == [5]
    assert unrated not in {r["sessionId"] for r in found}
    assert whole_redis.ttl(meta) <= 100  # read-only: no TTL refresh


def test_a_rated_answer_whose_question_was_trimmed_has_no_question(redis_client):
    store = SessionStore(redis_client, ttl=300, max_messages=3)  # odd: trims a question alone
    admin = SessionAdmin(store)
    sid = new_session(store, turns=1)
    store.rate(sid, 1, "down")
    turn = [NewMessage("user", "q1", now_ms()), NewMessage("assistant", "a1", now_ms())]
    store.append(sid, turn)  # keeps a0 (id 1), q1, a1: q0 is gone
    (record,) = admin.rated_answers()
    assert (record["messageId"], record["question"], record["answer"]) == (1, None, "a0")


def test_stats_buckets_ttls(whole_redis):
    store, admin = make(whole_redis, ttl=86400)
    sids = [new_session(store) for _ in range(4)]
    whole_redis.expire(session_keys(sids[0])[0], 60)  # inclusive upper bound
    whole_redis.expire(session_keys(sids[1])[0], 61)
    whole_redis.persist(session_keys(sids[2])[0])
    stats = admin.stats()
    rows = {row["le"]: row["count"] for row in stats.histogram}
    assert stats.sessions == 4 and stats.persistent == 1
    assert rows[60] == 1 and rows[300] == 1 and rows[86400] == 1 and rows[None] == 0


def test_purge_deletes_session_keys_and_nothing_else(whole_redis):
    store, admin = make(whole_redis)
    for _ in range(5):
        new_session(store)
    others = {"chat_sessionX": "1", "other:chat_session:1": "2", "config": "3"}
    for key, value in others.items():
        whole_redis.set(key, value)
    assert admin.purge() == 15  # five sessions, three keys each (meta, messages, write log)
    assert sorted(whole_redis.scan_iter(match="*")) == sorted(others)


def test_idempotency_keys_are_not_sessions_and_purge_takes_them(whole_redis):
    """Write logs and records are counted out, exported out, and purged with the rest."""
    store, admin = make(whole_redis)
    plain = new_session(store)
    keyed = new_session_id()
    store.claim("start-key-0123456", "fp", session_id=None, proposed_session_id=keyed,
                lease_ms=10_000, owner="o")  # fmt: skip
    write = IdempotentWrite("start-key-0123456", "fp", "reply copy")
    store.append(keyed, [NewMessage("user", "q", now_ms())], create=True, record=write)
    store.finish("start-key-0123456", write, session_id=keyed)
    inside = IdempotentWrite("inside-key-0123456", "fp", "reply copy")
    store.append(keyed, [NewMessage("user", "q2", now_ms())], record=inside)
    # 2 metas, 2 lists, 2 write logs, 2 records in the session, 1 session-less record
    assert whole_redis.dbsize() == 9
    assert set(admin.iter_session_ids()) == {plain, keyed} and admin.count() == 2
    stats = admin.stats()
    assert stats.sessions == 2 and stats.persistent == 0

    document = admin.export(keyed)
    assert [m["content"] for m in document["messages"]] == ["q", "q2"]
    assert "reply copy" not in repr(document) and "idem" not in repr(document)
    assert admin.restore(document, replace=True)
    assert admin.export(keyed)["messages"] == document["messages"]
    assert whole_redis.dbsize() == 9  # the import keeps the records, DELETE still finds them

    assert admin.purge() == 9 and whole_redis.dbsize() == 0
