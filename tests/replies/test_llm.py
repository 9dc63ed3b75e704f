"""The LLM path against a real chat-completions server on loopback."""

from __future__ import annotations

import logging
import time

import pytest

from chatbot_sessions.replies.extractive import NO_INFORMATION
from chatbot_sessions.replies.llm import (
    ChatCompletionsClient,
    LLMGenerator,
    build_messages,
    chat_completions_url,
)
from tests.replies.helpers import ANSWER, QUESTION, llm_generator, turns
from tests.support.fake_llm import Answer, completion
from tests.support.threads import run_in_threads


def test_request_carries_passages_history_in_order_and_settings(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda body: completion("  The AOF records each write.  ")
    history = turns(
        ("user", "What is Redis?"),
        ("assistant", "An in-memory store."),
        ("user", "Does it keep data on disk?"),
        ("assistant", "Yes, with snapshots or an append-only file."),
    )
    reply = llm_generator(kb_retriever, fake_llm).generate(QUESTION, history)

    [request] = fake_llm.received
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.body["model"] == "test-model"
    assert request.body["max_tokens"] == 123
    messages = request.body["messages"]
    assert messages[0]["role"] == "system"
    assert "[1] Redis guide › Persistence (redis.md)" in messages[0]["content"]
    assert "The append-only file logs every write" in messages[0]["content"]
    assert "fish tank" not in messages[0]["content"]  # only retrieved passages go
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "What is Redis?"),
        ("assistant", "An in-memory store."),
        ("user", "Does it keep data on disk?"),
        ("assistant", "Yes, with snapshots or an append-only file."),
        ("user", QUESTION),
    ]
    # the model's answer is what the user gets, citing what it was given
    assert reply.text == "The AOF records each write."
    assert reply.degraded is False
    assert [s.source for s in reply.sources] == ["redis.md"]


def test_only_the_last_context_messages_are_sent(kb_retriever, fake_llm) -> None:
    history = turns(*[("user" if i % 2 == 0 else "assistant", f"m{i}") for i in range(12)])
    llm_generator(kb_retriever, fake_llm, context_messages=4).generate(QUESTION, history)
    sent = [m["content"] for m in fake_llm.received[0].body["messages"][1:]]
    assert sent == ["m8", "m9", "m10", "m11", QUESTION]


def test_question_already_stored_in_history_is_not_sent_twice(kb_retriever, fake_llm) -> None:
    history = turns(("user", "Hi"), ("assistant", "Hello"), ("user", QUESTION))
    llm_generator(kb_retriever, fake_llm).generate(QUESTION, history)
    sent = [m["content"] for m in fake_llm.received[0].body["messages"][1:]]
    assert sent == ["Hi", "Hello", QUESTION]


def test_consecutive_turns_of_one_role_are_merged() -> None:
    history = turns(("user", "a"), ("user", "b"), ("assistant", "c"))
    roles = [(m["role"], m["content"]) for m in build_messages("q", history, [])[1:]]
    assert roles == [("user", "a\n\nb"), ("assistant", "c"), ("user", "q")]


def assert_degraded_extractive(reply) -> None:
    assert reply.degraded is True
    assert reply.text == ANSWER
    assert reply.sources[0].source == "redis.md"


def test_http_500_is_retried_once_then_degrades(kb_retriever, fake_llm, caplog) -> None:
    fake_llm.respond = lambda body: Answer(500, b'{"error": "boom"}')
    with caplog.at_level(logging.WARNING, logger="chatbot_sessions.replies.llm"):
        reply = llm_generator(kb_retriever, fake_llm).generate(QUESTION, [])
    assert_degraded_extractive(reply)
    assert len(fake_llm.received) == 2
    [warning] = [r.getMessage() for r in caplog.records]
    assert "HTTP 500" in warning and "test-model" in warning
    assert QUESTION not in warning  # user content stays out of logs


def test_a_transient_500_then_success_is_not_degraded(kb_retriever, fake_llm) -> None:
    answers = iter([Answer(503, b""), completion("second try")])
    fake_llm.respond = lambda body: next(answers)
    reply = llm_generator(kb_retriever, fake_llm).generate(QUESTION, [])
    assert (reply.text, reply.degraded) == ("second try", False)
    assert len(fake_llm.received) == 2


def test_timeout_degrades_within_the_budget(kb_retriever, fake_llm, caplog) -> None:
    fake_llm.respond = lambda body: Answer(200, completion("too late").body, delay=1.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        reply = llm_generator(kb_retriever, fake_llm, timeout=0.3).generate(QUESTION, [])
    elapsed = time.monotonic() - started
    assert_degraded_extractive(reply)
    assert elapsed < 1.0
    assert len(fake_llm.received) == 1  # a timed-out call is not retried
    assert any("timed out" in r.getMessage() for r in caplog.records)


def test_a_trickled_body_cannot_outlast_the_budget(kb_retriever, fake_llm, caplog) -> None:
    # One byte every 100 ms: every read returns well within any per-read timeout, so only
    # an overall deadline stops it. The whole body would take ~12 s.
    body = completion("slow " * 20).body
    fake_llm.respond = lambda _: Answer(200, body, trickle=0.1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        reply = llm_generator(kb_retriever, fake_llm, timeout=1.0).generate(QUESTION, [])
    elapsed = time.monotonic() - started
    assert len(body) * 0.1 > 10
    assert_degraded_extractive(reply)
    assert 1.0 <= elapsed < 1.5
    assert len(fake_llm.received) == 1
    assert any("timed out after 1s" in r.getMessage() for r in caplog.records)


def test_a_body_trickled_within_the_budget_is_used(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda _: Answer(200, completion("made it").body, trickle=0.002)
    reply = llm_generator(kb_retriever, fake_llm, timeout=5.0).generate(QUESTION, [])
    assert (reply.text, reply.degraded) == ("made it", False)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>Bad Gateway</html>", "not JSON"),
        (b'{"choices": []}', "not a chat completion"),
        (b'{"choices": [{"message": {"content": "  "}}]}', "no text"),
        (b'{"choices": [{"message": {"content": 42}}]}', "no text"),
    ],
)
def test_malformed_answers_degrade(kb_retriever, fake_llm, caplog, body, reason) -> None:
    fake_llm.respond = lambda _: Answer(200, body)
    with caplog.at_level(logging.WARNING):
        reply = llm_generator(kb_retriever, fake_llm).generate(QUESTION, [])
    assert_degraded_extractive(reply)
    assert len(fake_llm.received) == 1
    assert any(reason in r.getMessage() for r in caplog.records)


def test_client_error_is_not_retried(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda _: Answer(401, b'{"error": "bad key"}')
    reply = llm_generator(kb_retriever, fake_llm).generate(QUESTION, [])
    assert reply.degraded is True and len(fake_llm.received) == 1


def test_unreachable_server_degrades(kb_retriever, fake_llm) -> None:
    client = ChatCompletionsClient("http://127.0.0.1:9/v1", model="m", timeout=1.0)
    reply = LLMGenerator(kb_retriever, client).generate(QUESTION, [])
    assert_degraded_extractive(reply)


def test_degraded_reply_is_honest_when_nothing_matches(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda _: Answer(500, b"")
    reply = llm_generator(kb_retriever, fake_llm).generate("Who won the world cup?", [])
    assert (reply.text, reply.degraded, reply.sources) == (NO_INFORMATION, True, ())


def test_concurrent_generate_calls_get_their_own_answers(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda body: completion("echo: " + body["messages"][-1]["content"])
    generator = llm_generator(kb_retriever, fake_llm)
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        results[i] = generator.generate(f"durability question {i}", []).text

    run_in_threads(ask, 16, indexed=True)
    assert results == {i: f"echo: durability question {i}" for i in range(16)}


def test_chat_completions_url() -> None:
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
