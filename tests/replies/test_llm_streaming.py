"""Streamed LLM replies against a real chat-completions server streaming SSE on loopback."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable

import pytest

from chatbot_sessions.replies.base import collect
from chatbot_sessions.replies.llm import ChatCompletionsClient, LLMError
from tests.replies.helpers import ANSWER, QUESTION, llm_generator
from tests.support.fake_llm import Answer, Streamed, chunk, completion, sse

WORDS = ["The AOF ", "records ", "each ", "write."]
MESSAGES = [{"role": "user", "content": "q"}]


def timed(deltas: Iterable[str]) -> list[tuple[float, str]]:
    """Each delta with the seconds since the iteration began."""
    started = time.monotonic()
    return [(time.monotonic() - started, delta) for delta in deltas]


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_deltas_arrive_in_order_as_the_model_writes_them(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda body: Streamed(WORDS, gap=0.25)
    stream = llm_generator(kb_retriever, fake_llm).stream(QUESTION, [])
    assert [s.source for s in stream.sources] == ["redis.md"]  # before the first delta
    arrivals = timed(stream)

    assert [d for _, d in arrivals] == ["The AOF", " records", " each", " write."]
    first, last = arrivals[0][0], arrivals[-1][0]
    assert first < 0.6 and last - first > 0.5  # progressively, not all at the end
    assert stream.degraded is False
    [request] = fake_llm.received
    assert request.body["stream"] is True and request.body["model"] == "test-model"


def test_collect_gives_the_joined_deltas_and_the_same_request_as_generate(
    kb_retriever, fake_llm
) -> None:
    fake_llm.respond = lambda body: Streamed(["  The AOF ", "records each write.\n"])
    generator = llm_generator(kb_retriever, fake_llm)
    deltas = list(generator.stream(QUESTION, []))
    reply = collect(generator.stream(QUESTION, []))

    assert reply.text == "".join(deltas) == "The AOF records each write."  # stripped
    assert (reply.degraded, [s.source for s in reply.sources]) == (False, ["redis.md"])
    fake_llm.respond = lambda body: completion("whole")
    generator.generate(QUESTION, [])
    streamed, whole = fake_llm.received[0].body, fake_llm.received[-1].body
    assert streamed["messages"] == whole["messages"]
    assert {**streamed, "stream": False} == whole


def test_a_failure_after_some_text_ends_the_reply_there(kb_retriever, fake_llm, caplog) -> None:
    fake_llm.respond = lambda body: Streamed(WORDS, fault="drop", after=2)
    stream = llm_generator(kb_retriever, fake_llm).stream(QUESTION, [])
    with caplog.at_level(logging.WARNING):
        deltas = list(stream)

    assert "".join(deltas) == "The AOF records"
    assert stream.degraded is True
    assert len(fake_llm.received) == 1  # no retry once text is out
    [warning] = warnings(caplog)
    assert "broke off" in warning and "ends after 15 characters" in warning
    assert QUESTION not in warning


@pytest.mark.parametrize(
    ("answer", "requests", "reason"),
    [
        (Streamed(WORDS, fault="drop", after=0), 2, "connection failed"),
        (Answer(500, b'{"error": "boom"}'), 2, "HTTP 500"),
        (Answer(401, b""), 1, "HTTP 401"),
        (Streamed(WORDS, fault="garbage", after=0), 1, "not JSON"),
        (sse(chunk({"role": "assistant"}), chunk({}, "stop"), "data: [DONE]\n\n"), 1, "no text"),
    ],
    ids=["dropped", "http-500", "http-401", "garbage", "empty"],
)
def test_a_failure_before_any_text_streams_the_extractive_answer(
    kb_retriever, fake_llm, caplog, answer, requests, reason
) -> None:
    fake_llm.respond = lambda body: answer
    stream = llm_generator(kb_retriever, fake_llm).stream(QUESTION, [])
    with caplog.at_level(logging.WARNING):
        deltas = list(stream)

    assert "".join(deltas) == ANSWER
    assert stream.degraded is True
    assert [s.source for s in stream.sources] == ["redis.md"]
    assert len(fake_llm.received) == requests  # retried only as complete() retries
    [warning] = warnings(caplog)
    assert reason in warning and "answering extractively" in warning


def test_a_transient_error_before_text_is_retried_and_not_degraded(kb_retriever, fake_llm) -> None:
    answers = iter([Answer(503, b""), Streamed(WORDS)])
    fake_llm.respond = lambda body: next(answers)
    reply = collect(llm_generator(kb_retriever, fake_llm).stream(QUESTION, []))
    assert (reply.text, reply.degraded) == ("The AOF records each write.", False)
    assert len(fake_llm.received) == 2


def test_garbage_after_some_text_degrades(kb_retriever, fake_llm, caplog) -> None:
    fake_llm.respond = lambda body: Streamed(WORDS, fault="garbage", after=1)
    with caplog.at_level(logging.WARNING):
        reply = collect(llm_generator(kb_retriever, fake_llm).stream(QUESTION, []))
    assert (reply.text, reply.degraded) == ("The AOF", True)
    assert any("not JSON" in w for w in warnings(caplog))


def test_a_stalled_stream_is_cut_at_the_deadline(kb_retriever, fake_llm, caplog) -> None:
    # Two deltas by 0.6 s, then silence with the socket open. The read timeout alone
    # (fixed when the response began) would wait until ~1.6 s; the deadline is 1 s.
    fake_llm.respond = lambda body: Streamed(WORDS, gap=0.3, fault="stall", after=2)
    stream = llm_generator(kb_retriever, fake_llm, timeout=1.0).stream(QUESTION, [])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        text = "".join(stream)
    elapsed = time.monotonic() - started

    assert 1.0 <= elapsed < 1.45
    assert (text, stream.degraded) == ("The AOF records", True)
    assert any("timed out after 1s" in w for w in warnings(caplog))
    assert fake_llm.received[0].disconnected.wait(2)


def test_a_stream_slower_than_the_budget_is_cut_at_the_deadline(kb_retriever, fake_llm) -> None:
    # Every chunk arrives well within any read timeout; only the overall deadline stops it.
    fake_llm.respond = lambda body: Streamed([f"w{i} " for i in range(40)], gap=0.1)
    stream = llm_generator(kb_retriever, fake_llm, timeout=1.0).stream(QUESTION, [])
    started = time.monotonic()
    words = "".join(stream).split()
    elapsed = time.monotonic() - started

    assert 1.0 <= elapsed < 1.45
    assert 3 <= len(words) < 11 and words == [f"w{i}" for i in range(len(words))]
    assert stream.degraded is True


def test_close_mid_stream_stops_the_iteration_and_the_connection(kb_retriever, fake_llm) -> None:
    fake_llm.respond = lambda body: Streamed([f"w{i} " for i in range(20)], gap=0.05)
    stream = llm_generator(kb_retriever, fake_llm).stream(QUESTION, [])
    deltas = iter(stream)
    received = [next(deltas), next(deltas)]
    stream.close()
    stream.close()  # idempotent

    assert list(deltas) == []
    assert received == ["w0", " w1"]
    assert stream.degraded is False
    [request] = fake_llm.received
    assert request.disconnected.wait(2)
    assert request.sent < 20


def test_close_from_another_thread_wakes_a_read_waiting_on_the_model(
    kb_retriever, fake_llm, caplog
) -> None:
    fake_llm.respond = lambda body: Streamed(WORDS, fault="stall", after=1)
    stream = llm_generator(kb_retriever, fake_llm, timeout=10.0).stream(QUESTION, [])
    stopper = threading.Timer(0.3, stream.close)
    started = time.monotonic()
    stopper.start()
    with caplog.at_level(logging.WARNING):
        text = "".join(stream)
    elapsed = time.monotonic() - started

    assert elapsed < 1.5  # not the 10 s budget
    assert (text, stream.degraded) == ("The AOF", False)  # stopped, not failed
    assert warnings(caplog) == []
    assert fake_llm.received[0].disconnected.wait(2)


def test_close_before_iterating_sends_nothing(kb_retriever, fake_llm) -> None:
    stream = llm_generator(kb_retriever, fake_llm).stream(QUESTION, [])
    stream.close()
    assert list(stream) == [] and fake_llm.received == []


def client(fake_llm, timeout: float = 2.0) -> ChatCompletionsClient:
    return ChatCompletionsClient(fake_llm.base_url, model="m", timeout=timeout)


def test_the_sse_format_in_its_variations(fake_llm) -> None:
    # Comments, event/id/retry fields, CRLF line ends, a role-only first chunk, content
    # null, an empty-choices usage chunk; every byte sent on its own, so lines and
    # CRLFs are split across reads; U+2028 raw in a JSON string is not a line break.
    separated = json.dumps(chunk({"content": "Line\u2028one"}), ensure_ascii=False)
    events = [
        ": connected",
        "",
        "event: message",
        "id: 1",
        "retry: 100",
        f"data: {json.dumps(chunk({'role': 'assistant', 'content': None}))}",
        "",
        f"data: {separated}",
        "",
        ": keep-alive",
        "",
        f"data:{json.dumps(chunk({'content': ' and two'}))}",  # no space after the colon
        "",
        f"data: {json.dumps(chunk({}, 'length'))}",
        "",
        f"data: {json.dumps({'id': 'x', 'choices': [], 'usage': {}})}",
        "",
        "data: [DONE]",
        "",
    ]
    body = "".join(f"{line}\r\n" for line in events).encode()
    fake_llm.respond = lambda _: Answer(200, body, trickle=0.0005, content_type="text/event-stream")
    assert list(client(fake_llm).stream(MESSAGES)) == ["Line\u2028one", " and two"]


def test_a_server_ignoring_stream_true_gives_its_whole_answer(fake_llm) -> None:
    fake_llm.respond = lambda _: completion("  All at once. ")
    assert list(client(fake_llm).stream(MESSAGES)) == ["All at once."]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (sse("<html>Bad Gateway</html>\n"), "not server-sent events"),
        (sse(chunk({"content": 42})), "not a chat-completion chunk"),
        (sse({"object": "chat.completion.chunk"}), "not a chat-completion chunk"),
        (sse('data: ["a list"]\n\n'), "not a chat-completion chunk"),
        (sse({"error": {"message": "overloaded"}}), "reported an error"),
        (sse(chunk({"content": "cut"})), "ended before the reply was finished"),
        (sse(chunk({"content": "x"}), "data: \xff\n\n"), "not JSON"),
    ],
    ids=["html", "content-not-text", "no-choices", "not-an-object", "error", "no-end", "junk"],
)
def test_what_is_not_a_chat_completion_stream_raises(fake_llm, answer, reason) -> None:
    fake_llm.respond = lambda _: answer
    with pytest.raises(LLMError, match=reason):
        list(client(fake_llm).stream(MESSAGES))


def test_a_stream_not_utf8_raises(fake_llm) -> None:
    fake_llm.respond = lambda _: Answer(
        200, b"data: \xff\xfe\n\n", content_type="text/event-stream"
    )
    with pytest.raises(LLMError, match="not UTF-8"):
        list(client(fake_llm).stream(MESSAGES))
