"""ChatService over a store on fakeredis: the turn flow and its exactly-once edges."""

from __future__ import annotations

import time

import pytest

from chatbot_sessions.chat import ChatService
from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.sessions.store import SessionStore

KEY = "client-key-0123456789"


@pytest.fixture
def store(fake_redis) -> SessionStore:
    return SessionStore(fake_redis, ttl=300, max_messages=50)


def contents(store: SessionStore, sid: str) -> list[str]:
    return [m["content"] for m in store.read(sid).messages]


def test_a_turn_reads_context_generates_and_stores_both_messages(store, generator):
    chat = ChatService(store, generator, context_messages=2)
    first = chat.send(None, "one")
    second = chat.send(first.session_id, "two")
    assert second.session_id == first.session_id and not second.replayed
    assert contents(store, first.session_id) == ["one", "answer to: one", "two", "answer to: two"]
    assert [m["content"] for m in generator.calls[1][1]] == ["one", "answer to: one"]


def test_a_refusal_before_a_new_session_stores_nothing(store, generator, fake_redis):
    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused

    chat = ChatService(store, generator, context_messages=2, before_new_session=refuse)
    with pytest.raises(Refused):
        chat.send(None, "hello")
    assert generator.calls == [] and fake_redis.dbsize() == 0


def test_a_send_that_died_before_finishing_its_record_is_replayed_by_every_retry(
    store, generator, monkeypatch
):
    """The turn was stored and recorded in its new session, but the session-less record was
    never marked done (Redis failed at that last step). Every retry still gets the reply."""
    chat = ChatService(store, generator, 2, idempotency_lease=0.05, idempotency_wait=0)

    def fail(*args, **kwargs):
        raise StoreUnavailable("down for the last step")

    monkeypatch.setattr(store, "finish", fail)
    first = chat.send(None, "q", KEY)
    monkeypatch.undo()
    time.sleep(0.06)  # the first attempt's lease lapses, as after a crash
    retries = [chat.send(None, "q", KEY) for _ in range(3)]
    assert all(r.replayed and r.session_id == first.session_id for r in retries)
    assert contents(store, first.session_id) == ["q", "answer to: q"]


def test_a_serving_process_loads_the_tokenizer_before_its_first_request(make_app, monkeypatch):
    # Loading it on a visitor's first follow-up cost that request about a second.
    from chatbot_sessions.extensions import start_app
    from chatbot_sessions.replies import token_count

    monkeypatch.setattr(token_count, "_counter", None)
    app = make_app()
    assert token_count._counter is None  # building an app (as tests do) does not load it
    start_app(app)  # what each gunicorn worker does before it serves
    assert token_count._counter is not None
