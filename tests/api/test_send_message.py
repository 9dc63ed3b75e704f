"""POST /api/send-message: sessions made on demand, both turns stored, context passed."""

from __future__ import annotations

import re
import uuid

import pytest

from chatbot_sessions.domain import Reply
from chatbot_sessions.sessions.keys import session_keys
from tests.support.api import send
from tests.support.commands import record_commands
from tests.support.threads import run_in_threads


def test_without_header_creates_a_session(client):
    response = send(client, "hello")
    body = response.get_json()
    assert response.status_code == 200
    assert body["success"] is True and body["reply"] == "answer to: hello"
    assert body["sessionID"] == body["sessionId"] == response.headers["session-id"]
    assert uuid.UUID(body["sessionId"]).version == 4
    assert body["sources"] == [{"title": "Guide", "source": "guide.md", "score": 1.5}]
    assert body["degraded"] is False


def test_a_degraded_answer_is_stored_as_degraded(make_app, generator, monkeypatch):
    client = make_app().test_client()
    sid = send(client, "fine").get_json()["sessionId"]
    monkeypatch.setattr(generator, "generate", lambda q, h: Reply("fallback", degraded=True))
    assert send(client, "fails", sid).get_json()["degraded"] is True
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    assert [m.get("degraded", False) for m in messages] == [False, False, False, True]


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "00000000-0000-0000-0000-000000000000", str(uuid.uuid4())],
    ids=["missing", "empty", "garbage", "not-v4", "unknown-v4"],
)
def test_unknown_or_malformed_ids_get_a_new_session(client, header):
    headers = {} if header is None else {"session-id": header}
    response = client.post("/api/send-message", json={"question": "q"}, headers=headers)
    body = response.get_json()
    assert response.status_code == 200
    assert body["sessionId"] != header and response.headers["session-id"] == body["sessionId"]
    history = client.get(f"/api/session/{body['sessionId']}/history").get_json()
    assert [m["content"] for m in history["messages"]] == ["q", "answer to: q"]


@pytest.mark.parametrize(
    "header",
    [
        "garbage-session-id",
        "chat_session:{tag}*",
        "00000000-0000-0000-0000-000000000000",  # well-formed, but not a UUID v4
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # a UUID v1
        " 6ba7b810-9dad-41d1-80b4-00c04fd430c8",  # a v4 with a stray space
    ],
)
def test_malformed_session_header_never_becomes_a_key(client, fake_redis, monkeypatch, header):
    sent = record_commands(monkeypatch, fake_redis)
    response = client.post(
        "/api/send-message", json={"question": "q"}, headers={"session-id": header}
    )
    assert response.status_code == 200
    assert sent  # the new session was stored...
    stripped = header.strip()
    assert [args for args in sent if any(stripped in arg for arg in args)] == []  # ...not there


def test_existing_session_keeps_its_id_and_gets_context(client, generator):
    first = send(client, "first").get_json()["sessionId"]
    second = send(client, "second", first).get_json()
    assert second["sessionId"] == first
    question, history = generator.calls[-1]
    assert question == "second"
    assert [m["content"] for m in history] == ["first", "answer to: first"]


def test_context_is_limited_to_context_messages(make_app, generator):
    client = make_app({"CONTEXT_MESSAGES": 3}).test_client()
    sid = send(client, "q0").get_json()["sessionId"]
    for n in range(1, 4):
        send(client, f"q{n}", sid)
    assert [m["content"] for m in generator.calls[-1][1]] == [
        "answer to: q1",
        "q2",
        "answer to: q2",
    ]


JSON = "application/json"
LONE_SURROGATE = '{"question": "\\ud800"}'


def test_bad_bodies_store_nothing(client, fake_redis):
    cases = [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json", None),
        ({"json": ["q"]}, 422, "validation_error", "body"),
        ({"json": "just a string"}, 422, "validation_error", "body"),
        ({"json": {}}, 422, "validation_error", "question"),
        ({"json": {"question": ""}}, 422, "validation_error", "question"),
        ({"json": {"question": " \n\t "}}, 422, "validation_error", "question"),
        ({"json": {"question": 42}}, 422, "validation_error", "question"),
        ({"json": {"question": None}}, 422, "validation_error", "question"),
        ({"json": {"question": ["a"]}}, 422, "validation_error", "question"),
        ({"data": "question=hi"}, 422, "validation_error", "question"),
        # Valid JSON, but lone surrogates are not Unicode text: 422, not a 500 from encoding.
        ({"data": LONE_SURROGATE, "content_type": JSON}, 422, "validation_error", "question"),
        ({"data": '{"question": "ok \\udfff"}', "content_type": JSON}, 422, "validation_error",
         "question"),
    ]  # fmt: skip
    for kwargs, status, error, field in cases:
        response = client.post("/api/send-message", **kwargs)
        body = response.get_json()
        assert response.status_code == status, kwargs
        assert body["success"] is False and body["error"] == error and body["message"]
        if field:
            assert field in body["details"]["fields"]
    assert fake_redis.dbsize() == 0
    surrogate = client.post("/api/send-message", data=LONE_SURROGATE, content_type=JSON)
    assert surrogate.get_json()["details"]["fields"]["question"] == ["must be valid Unicode text"]


@pytest.mark.parametrize(
    "key",
    [
        "\u00e9" * 20,  # Latin-1: how a WSGI server hands over non-ASCII header bytes
        "\u043a\u043b\u044e\u0447" * 5,
        "\u2603" * 20,
        "\udcff" * 20,  # surrogate-escaped bytes, should a server ever pass them on
        "a" * 15 + "\x00",
    ],
)
def test_non_ascii_idempotency_keys_are_422(client, fake_redis, key):
    # environ_overrides: the test client would refuse to encode some of these itself.
    response = client.post(
        "/api/send-message", json={"question": "q"}, environ_overrides={"HTTP_IDEMPOTENCY_KEY": key}
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["details"]["fields"]
    assert fake_redis.dbsize() == 0


# Blank in one regex dialect or the other: Python's whitespace, ECMA-262's (U+FEFF), both.
BLANKISH = ["\x1d", "\x1c\x1f", " \x85 ", "\ufeff", "\u3000\u2028", "\t\x0b\x0c"]


@pytest.mark.parametrize("question", BLANKISH)
def test_questions_blank_in_either_regex_dialect_are_422(client, fake_redis, question):
    response = client.post("/api/send-message", json={"question": question})
    assert response.status_code == 422
    assert response.get_json()["details"]["fields"]["question"] == ["must not be blank"]
    assert fake_redis.dbsize() == 0


def test_the_documented_pattern_is_the_blank_check(client):
    # A client (or a fuzzer) that trusts the OpenAPI document is never told its question is
    # blank when the document's pattern says it is not, nor the other way round.
    pattern = re.compile(
        client.get("/api/openapi.json").get_json()["components"]["schemas"]["SendMessage"][
            "properties"
        ]["question"]["pattern"]
    )
    for question in [*BLANKISH, "a", " ok ", "\x1da", "\u200b", "\x7f", "\x00"]:
        accepted = client.post("/api/send-message", json={"question": question}).status_code
        assert (accepted == 200) == bool(pattern.search(question)), repr(question)


def test_question_length_limit(make_app, fake_redis):
    client = make_app({"MAX_QUESTION_CHARS": 10}).test_client()
    assert send(client, "x" * 10).status_code == 200
    keys_before = fake_redis.dbsize()
    response = send(client, "x" * 11)
    assert response.status_code == 422
    assert "at most 10" in response.get_json()["details"]["fields"]["question"][0]
    assert fake_redis.dbsize() == keys_before


def test_oversized_body_is_413_json(make_app, fake_redis):
    client = make_app({"MAX_CONTENT_LENGTH": 2048}).test_client()
    response = client.post("/api/send-message", json={"question": "x" * 5000})
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert fake_redis.dbsize() == 0


def test_untrusted_content_is_stored_verbatim(client):
    payload = '<img src=x onerror=alert(1)> "quotes" \u2603 \x00?'
    sid = send(client, payload).get_json()["sessionId"]
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    assert messages[0]["content"] == payload


def test_session_deleted_during_generation_keeps_the_turn_in_a_new_session(
    client, fake_redis, generator
):
    sid = send(client, "first").get_json()["sessionId"]
    original = generator.generate

    def delete_then_answer(question, history):
        fake_redis.delete(*session_keys(sid))
        return original(question, history)

    generator.generate = delete_then_answer
    body = send(client, "second", sid).get_json()
    assert body["sessionId"] != sid
    assert fake_redis.exists(*session_keys(sid)) == 0  # not resurrected
    messages = client.get(f"/api/session/{body['sessionId']}/history").get_json()["messages"]
    assert [m["content"] for m in messages] == ["second", "answer to: second"]


def answer_ids(client, sid: str) -> dict[str, int]:
    """Each stored answer's content and its ``id`` in history."""
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    return {m["content"]: m["id"] for m in messages if m["type"] == "assistant"}


def test_the_answer_names_its_id_in_history(make_app):
    client = make_app({"MAX_MESSAGES_PER_SESSION": "4"}).test_client()
    sid = None
    for n in range(4):  # past the trim: ids are absolute positions, not list indexes
        body = send(client, f"q{n}", sid).get_json()
        sid = body["sessionId"]
        assert body["messageId"] == 2 * n + 1 == answer_ids(client, sid)[f"answer to: q{n}"]
    rated = client.post(
        f"/api/session/{sid}/messages/{body['messageId']}/feedback", json={"rating": "up"}
    )
    assert rated.status_code == 200


def test_concurrent_sends_into_one_session_each_name_their_own_answer(app, client):
    sid = send(client, "first").get_json()["sessionId"]
    named: dict[str, int] = {}

    def talk(t: int) -> None:
        own = app.test_client()
        for i in range(5):
            body = send(own, f"q{t}.{i}", sid).get_json()
            assert body["sessionId"] == sid
            named[f"answer to: q{t}.{i}"] = body["messageId"]

    run_in_threads(talk, 6, indexed=True)
    stored = answer_ids(client, sid)
    assert len(named) == 30 and len(set(named.values())) == 30
    assert named == {answer: stored[answer] for answer in named}
