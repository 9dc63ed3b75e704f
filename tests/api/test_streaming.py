"""Streamed replies in-process (fakeredis and a real Redis): events, resume, stop, limits."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.extensions import close_app
from tests.support.api import history
from tests.support.streams import Event, SlowGenerator, parse_events

SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def slow():
    return SlowGenerator(parts=6, pause=0.05)


@pytest.fixture
def make(redis_client, slow):
    apps = []

    def _make(**config):
        app = create_app(
            {"RATE_LIMIT_ENABLED": "0", **config}, redis_client=redis_client, reply_generator=slow
        )
        apps.append(app)
        return app.test_client()

    yield _make
    for app in apps:
        close_app(app)


def stream(client, question="q", sid=None, key=None, after=None):
    headers = dict(SSE)
    if sid:
        headers["session-id"] = sid
    if key:
        headers["Idempotency-Key"] = key
    return client.post(
        "/api/send-message", json={"question": question}, headers=headers, buffered=False
    )


def events_of(response) -> list[Event]:
    return [e for e in parse_events(response.response) if isinstance(e, Event)]


def wait_stored(client, sid, count=2, timeout=5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        contents = history(client, sid)
        if len(contents) >= count:
            return contents
        time.sleep(0.02)
    raise AssertionError(f"not stored in time: {history(client, sid)}")


def test_events_come_in_order_and_done_is_the_stored_reply(make, slow):
    client = make()
    response = stream(client, "hello")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = events_of(response)
    parts = slow.pieces("hello")
    assert [e.name for e in events] == ["start"] + ["delta"] * len(parts) + ["done"]
    assert [e.id for e in events] == list(range(1, len(parts) + 3))
    assert [e.data["text"] for e in events[1:-1]] == parts
    start, done = events[0].data, events[-1].data
    sid = start["sessionId"]
    assert start == {"sessionId": sid, "sessionID": sid, "replyId": start["replyId"]}
    text = "".join(e.data["text"] for e in events[1:-1])
    assert done["reply"] == text and done["success"] is True and done["stopped"] is False
    assert done["sessionId"] == done["sessionID"] == sid and done["replyId"] == start["replyId"]
    assert done["sources"] == [{"title": "Guide", "source": "guide.md", "score": 1.5}]
    assert history(client, sid) == ["hello", text]


def test_the_done_event_names_the_answer_in_every_way_it_is_told(make):
    client = make()
    first = events_of(stream(client, "first"))
    sid = first[0].data["sessionId"]
    key = str(uuid.uuid4())
    events = events_of(stream(client, "second", sid, key=key))
    reply_id = events[0].data["replyId"]
    done = events[-1].data
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    assert (first[-1].data["messageId"], done["messageId"]) == (1, 3)
    assert messages[3]["id"] == 3 and messages[3]["content"] == done["reply"]
    resumed = events_of(client.get(f"/api/session/{sid}/replies/{reply_id}/events"))
    assert resumed[-1].data == done  # rendered again from the stored events
    stream(client, "third", sid).close()
    wait_stored(client, sid, count=6)
    replay = events_of(stream(client, "second", sid, key=key))
    assert replay[-1].data["messageId"] == 3  # the keyed replay's, not the newest answer's


def test_a_degraded_streamed_answer_is_stored_as_degraded(make, slow, monkeypatch):
    client = make()
    streamed = slow.stream

    def degraded(question, history):
        reply = streamed(question, history)
        reply.degraded = True
        return reply

    monkeypatch.setattr(slow, "stream", degraded)
    sid = events_of(stream(client, "hello"))[0].data["sessionId"]
    wait_stored(client, sid)
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    assert [m.get("degraded", False) for m in messages] == [False, True]


def test_the_json_answer_is_unchanged_without_asking_for_a_stream(make):
    client = make()
    for accept in (None, "*/*", "application/json"):
        headers = {"Accept": accept} if accept else {}
        response = client.post("/api/send-message", json={"question": "q"}, headers=headers)
        assert response.status_code == 200 and response.is_json
        # messageId is the one field added since (additive: the answer's id in history).
        assert set(response.get_json()) == {
            "success", "reply", "sessionID", "sessionId", "sources", "degraded", "messageId",
        }  # fmt: skip


def test_a_client_that_goes_away_still_gets_its_turn_stored_and_can_resume(make):
    client = make()
    response = stream(client, "hello")
    seen = []
    for event in parse_events(response.response):
        seen.append(event)
        if len(seen) == 3:  # start and two deltas
            break
    response.close()  # the client goes away
    sid, reply_id = seen[0].data["sessionId"], seen[0].data["replyId"]
    stored = wait_stored(client, sid)
    resumed = client.get(
        f"/api/session/{sid}/replies/{reply_id}/events",
        headers={"Last-Event-ID": str(seen[2].id)},
        buffered=False,
    )
    rest = events_of(resumed)
    assert rest[0].id == 4 and rest[-1].name == "done"
    text = "".join(e.data["text"] for e in [*seen[1:], *rest] if e.name == "delta")
    assert text == stored[1] == rest[-1].data["reply"]
    after = rest[-1].id - 1
    by_query = client.get(f"/api/session/{sid}/replies/{reply_id}/events?after={after}")
    assert [e.name for e in events_of(by_query)] == ["done"]


def test_stop_keeps_the_text_so_far_marked_stopped(make, slow):
    slow.parts, slow.pause = 40, 0.05
    client = make()
    response = stream(client, "long one")
    events = parse_events(response.response)
    start = next(events)
    sid, reply_id = start.data["sessionId"], start.data["replyId"]
    next(events)  # the first delta
    stop = client.post(f"/api/session/{sid}/replies/{reply_id}/stop")
    assert stop.status_code == 202 and stop.get_json()["success"] is True
    rest = [e for e in events if hasattr(e, "name")]
    done = rest[-1]
    assert done.name == "done" and done.data["stopped"] is True
    full = "".join(slow.pieces("long one"))
    assert 0 < len(done.data["reply"]) < len(full) and full.startswith(done.data["reply"])
    message = client.get(f"/api/session/{sid}/history").get_json()["messages"][-1]
    assert message["stopped"] is True and message["content"] == done.data["reply"]
    again = client.post(f"/api/session/{sid}/replies/{reply_id}/stop")
    assert again.status_code == 202 and "ended" in again.get_json()["message"]


def test_a_keyed_retry_of_a_stopped_reply_replays_it_stopped(make, slow):
    slow.parts, slow.pause = 40, 0.05
    client = make()
    events = parse_events(stream(client, "long one", key="stopped-reply-key-1").response)
    start = next(events)
    sid, reply_id = start.data["sessionId"], start.data["replyId"]
    next(events)  # the first delta
    client.post(f"/api/session/{sid}/replies/{reply_id}/stop")
    done = [e for e in events if hasattr(e, "name")][-1]
    assert done.data["stopped"] is True
    wait_stored(client, sid)
    replay = [e for e in events_of(stream(client, "long one", key="stopped-reply-key-1"))]
    assert replay[-1].name == "done"
    assert replay[-1].data["stopped"] is True and replay[-1].data["reply"] == done.data["reply"]


@pytest.mark.parametrize("reply", ["0" * 32, "not-a-reply", "X" * 32])
def test_unknown_replies_and_sessions_are_404_json(make, reply):
    client = make()
    sid = client.post("/api/session/create").get_json()["sessionId"]
    for path in (f"{sid}/replies/{reply}/events", f"{uuid.uuid4()}/replies/{'0' * 32}/events"):
        response = client.get(f"/api/session/{path}")
        assert response.status_code == 404 and response.get_json()["success"] is False
    stop = client.post(f"/api/session/{sid}/replies/{reply}/stop")
    assert stop.status_code == 404 and stop.get_json()["error"] == "reply_not_found"


def test_a_full_producer_pool_is_503_busy_and_stores_nothing(make, slow, redis_client):
    slow.parts, slow.pause = 30, 0.05
    client = make(MAX_GENERATIONS="1")
    first = stream(client, "one")
    next(parse_events(first.response))  # the first reply is being written
    before = set(redis_client.scan_iter(match="chat_session:*"))
    busy = stream(client, "two")
    assert busy.status_code == 503 and busy.get_json()["error"] == "busy"
    assert busy.headers["Retry-After"] == "1"
    assert set(redis_client.scan_iter(match="chat_session:*")) == before
    first.close()


def test_a_keyed_retry_while_streaming_joins_the_same_reply(make, slow):
    slow.parts, slow.pause = 10, 0.05
    client = make()
    key = str(uuid.uuid4())
    first = stream(client, "hello", key=key)
    start = next(parse_events(first.response))
    again = stream(client, "hello", key=key)
    joined = events_of(again)
    assert joined[0].data == start.data  # the same reply, from its first event
    assert joined[-1].name == "done" and slow.calls == 1
    sid = start.data["sessionId"]
    assert history(client, sid) == ["hello", joined[-1].data["reply"]]
    replay = events_of(stream(client, "hello", key=key))
    assert [e.name for e in replay] == ["start", "delta", "done"]
    assert replay[-1].data["reply"] == joined[-1].data["reply"] and slow.calls == 1
    first.close()


def test_deleting_a_session_removes_its_reply_streams(make, redis_client):
    client = make()
    events = events_of(stream(client, "hello"))
    sid = events[0].data["sessionId"]
    assert any(":reply:" in k for k in redis_client.scan_iter(match=f"*{sid}*"))
    assert client.delete(f"/api/session/{sid}").status_code == 200
    assert list(redis_client.scan_iter(match=f"*{sid}*")) == []


def test_two_conversations_stream_at_once(make):
    client = make()
    results = {}

    def talk(n):
        results[n] = events_of(stream(client, f"q{n}"))

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(r[-1].name == "done" and f"q{n}" in r[-1].data["reply"] for n, r in results.items())


def test_odd_last_event_ids_resume_from_the_start_never_a_500(make):
    client = make()
    events = events_of(stream(client, "hello"))
    sid, reply_id = events[0].data["sessionId"], events[0].data["replyId"]
    url = f"/api/session/{sid}/replies/{reply_id}/events"
    for odd in ("\u00b2", "9" * 30, "-3", "1e3", ""):  # ² passes str.isdigit, not int()
        response = client.get(url, headers={"Last-Event-ID": odd})
        assert response.status_code == 200, odd
        assert [e.id for e in events_of(response)] == [e.id for e in events]
    too_far = client.get(f"{url}?after={10**13}")
    assert too_far.status_code == 422 and too_far.get_json()["error"] == "validation_error"


def test_resuming_a_reply_after_its_end_is_204_at_once(make):
    client = make(LLM_TIMEOUT="1")
    events = events_of(stream(client, "hello"))
    sid, reply_id = events[0].data["sessionId"], events[0].data["replyId"]
    started = time.monotonic()
    response = client.get(
        f"/api/session/{sid}/replies/{reply_id}/events",
        headers={"Last-Event-ID": str(events[-1].id)},
    )
    assert response.status_code == 204 and response.data == b""
    assert time.monotonic() - started < 1  # not a thread held until the reply "times out"


def test_a_session_deleted_mid_stream_keeps_nothing_of_the_turn(make, slow, redis_client):
    slow.parts, slow.pause = 20, 0.05
    client = make()
    response = stream(client, "secret question")
    start = next(parse_events(response.response))
    sid = start.data["sessionId"]
    assert client.delete(f"/api/session/{sid}").status_code == 200
    response.close()
    # The producer's next delta finds the session gone and stops writing; give it longer
    # than the whole answer would take, so a turn kept elsewhere would be stored by now.
    slow.streams[0].closed.wait(2)
    time.sleep(0.2)
    leftovers = [k for k in redis_client.scan_iter(match="chat_session:{*") if "secret" in str(k)]
    stored = [
        k for k in redis_client.scan_iter(match="chat_session:{*}:messages")
        if any("secret question" in m for m in redis_client.lrange(k, 0, -1))
    ]  # fmt: skip
    assert leftovers == [] and stored == []
    assert list(redis_client.scan_iter(match=f"*{sid}*")) == []


@pytest.mark.parametrize(
    "accept",
    [None, "", "*/*", "application/json", "text/*", "text/event-stream",
     "TEXT/EVENT-STREAM", "text/event-stream;q=0", "text/event-stream; q=0.5",
     "application/json, text/event-stream;q=0.1", " text/event-stream ", "text/event-streams",
     '"text/event-stream"', "text/event-stream;q=abc", '"text/event\\-stream"',
     '"text\\/event-stream"'],
)  # fmt: skip
def test_a_stream_is_wanted_exactly_when_werkzeugs_parse_of_accept_says_so(app, accept):
    from chatbot_sessions.api.streams import EVENT_STREAM, wants_stream

    headers = {} if accept is None else {"Accept": accept}
    with app.test_request_context("/", headers=headers) as ctx:
        parsed = any(v == EVENT_STREAM and q > 0 for v, q in ctx.request.accept_mimetypes)
        assert wants_stream() is parsed
