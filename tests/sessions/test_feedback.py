"""Ratings of answers in the store, on fakeredis and a real Redis: what is stored where,
what is refused, the TTL rule, trims, and exactly-once after a lost reply."""

from __future__ import annotations

import pytest
import redis

from chatbot_sessions import signals
from chatbot_sessions.domain import NewMessage, Source
from chatbot_sessions.exceptions import MessageNotFound, NotAnAnswer, SessionNotFound
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.keys import feedback_key, session_keys, writes_key
from chatbot_sessions.sessions.store import SessionStore
from chatbot_sessions.timestamps import now_ms
from tests.support.commands import lose_replies, record_commands


@pytest.fixture
def store(redis_client) -> SessionStore:
    return SessionStore(redis_client, ttl=300, max_messages=6)


def turn(n: int, *, degraded: bool = False) -> list[NewMessage]:
    at = now_ms()
    answer = NewMessage(
        "assistant", f"a{n}", at + 1, (Source("T", "t.md", 0.5),), degraded=degraded
    )
    return [NewMessage("user", f"q{n}", at), answer]


def session(store: SessionStore, turns: int = 2) -> str:
    sid = new_session_id()
    store.create(sid)
    for n in range(turns):
        store.append(sid, turn(n))
    return sid


def snapshot(client: redis.Redis, sid: str) -> dict[str, object]:
    """Every key naming the session, with its value (TTLs aside)."""
    found: dict[str, object] = {}
    for key in client.scan_iter(match=f"*{sid}*"):
        kind = client.type(key)
        found[key] = {
            "hash": client.hgetall,
            "list": lambda k: client.lrange(k, 0, -1),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        }[kind](key)
    return found


def feedback_of(store: SessionStore, sid: str) -> dict[int, object]:
    return {m["id"]: m["feedback"] for m in store.read(sid).messages if "feedback" in m}


def test_a_rating_is_stored_with_the_session_and_shown_on_its_answer(store, redis_client):
    sid = session(store)
    given = store.rate(sid.upper(), 3, "down", "the answer misses the point")
    assert (given.session_id, given.message_id, given.rating) == (sid, 3, "down")
    assert given.comment == "the answer misses the point"
    assert feedback_of(store, sid) == {
        3: {"rating": "down", "comment": "the answer misses the point"}
    }
    assert redis_client.hkeys(feedback_key(sid)) == ["3"]
    messages = store.read(sid).messages
    assert [set(m) - {"sources"} for m in messages][2:] == [
        {"id", "type", "content", "timestamp"},
        {"id", "type", "content", "timestamp", "feedback"},
    ]  # only the rated answer carries it


def test_a_second_rating_replaces_the_first(store, redis_client):
    sid = session(store)
    store.rate(sid, 1, "up", "great")
    store.rate(sid, 1, "down")
    assert feedback_of(store, sid) == {1: {"rating": "down", "comment": None}}
    assert redis_client.hlen(feedback_key(sid)) == 1


def test_ratings_show_on_pages_of_history_too(store):
    sid = session(store, turns=3)
    store.rate(sid, 1, "up")
    store.rate(sid, 5, "down")
    newest = store.read(sid, limit=2)
    assert [(m["id"], m.get("feedback")) for m in newest.messages] == [
        (4, None), (5, {"rating": "down", "comment": None}),
    ]  # fmt: skip
    older = store.read(sid, limit=2, before=2)
    assert [(m["id"], m.get("feedback")) for m in older.messages] == [
        (0, None), (1, {"rating": "up", "comment": None}),
    ]  # fmt: skip


def test_a_question_cannot_be_rated_and_nothing_is_stored(store, redis_client):
    sid = session(store)
    before = snapshot(redis_client, sid)
    with pytest.raises(NotAnAnswer):
        store.rate(sid, 2, "up")
    assert snapshot(redis_client, sid) == {
        **before,
        session_keys(sid)[0]: redis_client.hgetall(session_keys(sid)[0]),
    }  # an access (lastActivity), nothing else
    assert redis_client.exists(feedback_key(sid)) == 0


def test_only_up_and_down_are_ratings(store, redis_client):
    sid = session(store)
    with pytest.raises(ValueError):
        store.rate(sid, 1, "meh")
    assert redis_client.exists(feedback_key(sid)) == 0


@pytest.mark.parametrize("bad", ["x", "-1", -1, "01", " 1", "1.0", "+1", "", "1e3", 10**15, True])
def test_malformed_message_ids_never_reach_redis(store, redis_client, monkeypatch, bad):
    sid = session(store)
    sent = record_commands(monkeypatch, redis_client)
    with pytest.raises(MessageNotFound):
        store.rate(sid, bad, "up")
    assert sent == []


@pytest.mark.parametrize("which", ["beyond the newest", "far beyond", "trimmed away"])
def test_ids_of_no_stored_message_are_refused_and_nothing_is_stored(store, redis_client, which):
    sid = session(store, turns=4)  # 8 appended, 6 kept (max_messages=6): ids 2..7
    message_id = {"beyond the newest": 8, "far beyond": 10**14, "trimmed away": 1}[which]
    before = snapshot(redis_client, sid)
    with pytest.raises(MessageNotFound):
        store.rate(sid, str(message_id), "up")
    after = snapshot(redis_client, sid)
    assert after.keys() == before.keys() and redis_client.exists(feedback_key(sid)) == 0


def test_an_unknown_session_is_not_found_and_gets_no_key(store, redis_client):
    sid = new_session_id()
    with pytest.raises(SessionNotFound):
        store.rate(sid, 1, "up")
    assert list(redis_client.scan_iter(match=f"*{sid}*")) == []


@pytest.mark.parametrize("sid", ["not-a-session", "*", "chat_session:*", ""])
def test_malformed_session_ids_are_not_found_and_never_reach_redis(
    store, redis_client, monkeypatch, sid
):
    sent = record_commands(monkeypatch, redis_client)
    with pytest.raises(SessionNotFound):
        store.rate(sid, 1, "up")
    assert sent == []


def test_the_feedback_key_follows_the_session_ttl_and_goes_with_it(store, redis_client):
    sid = session(store)
    store.rate(sid, 1, "up")
    key = feedback_key(sid)
    assert 290 < redis_client.ttl(key) <= 300
    redis_client.expire(key, 5)
    store.touch(sid)  # any access re-arms it, like meta, messages and the write log
    assert 290 < redis_client.ttl(key) <= 300
    store.delete(sid)
    assert list(redis_client.scan_iter(match=f"*{sid}*")) == []  # no key names the session


def test_trimmed_answers_take_their_ratings_with_them(store, redis_client):
    sid = session(store, turns=3)  # ids 0..5, all kept
    store.rate(sid, 1, "up")
    store.rate(sid, 3, "down")
    store.rate(sid, 5, "up")
    store.append(sid, turn(3))  # trims ids 0 and 1
    assert sorted(redis_client.hkeys(feedback_key(sid))) == ["3", "5"]
    store.append(sid, turn(4))  # trims 2 and 3
    assert redis_client.hkeys(feedback_key(sid)) == ["5"]
    assert feedback_of(store, sid) == {5: {"rating": "up", "comment": None}}


def test_a_rating_whose_reply_was_lost_is_stored_once_and_answered(
    store, redis_client, monkeypatch
):
    sid = session(store)
    given = []

    def receive(_sender, **kwargs):
        given.append(kwargs)

    signals.feedback_given.connect(receive, sender=store)
    lost = lose_replies(monkeypatch, redis_client)
    result = store.rate(sid, 1, "up", "ok")
    assert len(lost) == 1 and lost[0][1][0] == "rated"  # the first run stored it
    assert result.rating == "up" and feedback_of(store, sid) == {
        1: {"rating": "up", "comment": "ok"}
    }
    marks = [m for m in redis_client.zrange(writes_key(sid), 0, -1) if m.startswith("w:")]
    assert len(marks) == 4  # the create, two appends and this one rating
    assert given == [{"rating": "up", "degraded": False}]  # counted once


def test_the_replay_of_a_rating_never_overwrites_a_later_one(store, redis_client, monkeypatch):
    """The first run stores 'up', another rating 'down' comes, then the reply of the first is
    lost and the store runs it again: its write id answers, and 'down' stays."""
    sid = session(store)
    original = redis_client.execute_command
    state = {"lost": False}

    def lose_after_a_later_rating(*args, **options):
        result = original(*args, **options)
        if args[0] in ("EVALSHA", "EVAL") and not state["lost"]:
            state["lost"] = True
            store.rate(sid, 1, "down", "later")
            raise redis.exceptions.ConnectionError("reply lost")
        return result

    monkeypatch.setattr(redis_client, "execute_command", lose_after_a_later_rating)
    assert store.rate(sid, 1, "up").rating == "up"  # answered as its first run did
    monkeypatch.undo()
    assert feedback_of(store, sid) == {1: {"rating": "down", "comment": "later"}}


def test_the_signal_says_whether_the_rated_answer_was_degraded(store):
    sid = new_session_id()
    store.append(sid, turn(0, degraded=True), create=True)
    store.append(sid, turn(1))
    given = []

    def receive(_sender, **kwargs):
        given.append(kwargs)

    signals.feedback_given.connect(receive, sender=store)
    store.rate(sid, 1, "down")
    store.rate(sid, 3, "up")
    assert given == [{"rating": "down", "degraded": True}, {"rating": "up", "degraded": False}]


@pytest.mark.redis
def test_history_without_feedback_reads_no_ratings(private_redis):
    """The READ script asks the feedback hash (HMGET) only when the session has one."""
    store = SessionStore(private_redis, ttl=300, max_messages=50)
    sid = session(store)

    def hmgets() -> int:
        private_redis.config_resetstat()
        store.read(sid)
        return int(private_redis.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))

    assert hmgets() == 1  # meta's createdAt and seq
    store.rate(sid, 1, "up")
    assert hmgets() == 2  # and the page's ratings
