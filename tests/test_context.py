"""Long conversations: the token budget, the rolling summary, and GET …/context.

The LLM is a real HTTP server on loopback (tests/support/fake_llm.py) that records every
request: chat requests are answered with a fixed text, summary requests (recognised by
their prompt) with the "facts" they were given, so a test can follow what the summary
carries from the first turn to the last request.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.context import _pairs, build_context
from chatbot_sessions.extensions import close_app
from chatbot_sessions.replies.retriever import HISTORY_MESSAGES
from chatbot_sessions.replies.summary import SUMMARY_PROMPT
from chatbot_sessions.replies.token_count import (
    count_message_tokens,
    count_tokens,
    most_message_tokens,
)
from chatbot_sessions.sessions.store import StoredContext
from tests.support.api import send
from tests.support.fake_llm import Answer, completion

FACT = re.compile(r"fact-\d+")
SUMMARY_MARK = SUMMARY_PROMPT.split(".")[0]


def is_summary_request(body: dict) -> bool:
    return SUMMARY_MARK in body["messages"][0]["content"]


def remembering(body: dict) -> Answer:
    """Summaries keep every fact they were shown; chat answers are long filler."""
    if is_summary_request(body):
        facts = sorted(set(FACT.findall(body["messages"][1]["content"])), key=lambda f: int(f[5:]))
        return completion("Facts so far: " + " ".join(facts))
    return completion("This is a long answer. " * 20)


@pytest.fixture
def llm_app(redis_client, fake_llm):
    apps = []

    def _make(**config):
        app = create_app(
            {
                "RATE_LIMIT_ENABLED": "0",
                "LLM_BASE_URL": fake_llm.base_url,
                "LLM_TIMEOUT": "5",
                **config,
            },
            redis_client=redis_client,
        )
        apps.append(app)
        return app

    yield _make
    for app in apps:
        close_app(app)


def context_of(client, sid) -> dict:
    response = client.get(f"/api/session/{sid}/context")
    assert response.status_code == 200
    return response.get_json()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def chat_requests(fake_llm) -> list[dict]:
    return [r.body for r in fake_llm.received if not is_summary_request(r.body)]


def test_a_long_conversation_keeps_its_first_turns_through_the_summary(llm_app, fake_llm):
    fake_llm.respond = remembering
    client = llm_app(CONTEXT_TOKENS="400").test_client()
    sid = None
    for n in range(60):
        question = f"Please remember fact-{n}. " + "Some padding words here. " * 8
        response = send(client, question, sid)
        assert response.status_code == 200
        sid = response.get_json()["sessionId"]
        # Off the reply's path: let the summary catch up before the next turn.
        wait_for(lambda n=n, sid=sid: n < 6 or context_of(client, sid)["summaryThrough"] > 0)
    last = chat_requests(fake_llm)[-1]["messages"]
    system, turns = last[0]["content"], last[1:]
    # The newest turns verbatim, within the budget, oldest first ...
    verbatim = [m["content"] for m in turns[:-1]]
    assert verbatim and "fact-58" in verbatim[-2]
    tokens = sum(count_message_tokens({"type": "user", "content": c}) for c in verbatim)
    summary = system.split("Summary of the conversation before the turns below:\n")[1]
    assert tokens + count_tokens(summary) <= 400
    # ... and what the first turns said, through the summary.
    assert {"fact-0", "fact-1", "fact-2"} <= set(FACT.findall(summary))
    # Once the last turn's summary is in, the two meet: nothing between them, nothing lost.
    context = wait_for(
        lambda: (c := context_of(client, sid))["summaryThrough"] == c["messages"][0]["id"] and c
    )
    assert context["budget"] == 400 and context["tokens"] <= 400 and context["summary"]
    assert len(fake_llm.received) - len(chat_requests(fake_llm)) <= 60  # at most one per turn


def test_concurrent_sends_keep_the_summary_moving_forward(llm_app, fake_llm, redis_client):
    fake_llm.respond = remembering
    client = llm_app(CONTEXT_TOKENS="300").test_client()
    sid = send(client, "start fact-0").get_json()["sessionId"]
    seen: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(context_of(client, sid)["summaryThrough"])
            time.sleep(0.01)

    def talk(t):
        for i in range(8):
            assert send(client, f"fact-{t * 100 + i + 1} " + "words " * 40, sid).status_code == 200

    watcher = threading.Thread(target=watch)
    watcher.start()
    talkers = [threading.Thread(target=talk, args=(t,)) for t in range(3)]
    for thread in talkers:
        thread.start()
    for thread in talkers:
        thread.join(30)
    context = wait_for(
        lambda: (c := context_of(client, sid))["summaryThrough"] == c["messages"][0]["id"] and c
    )
    stop.set()
    watcher.join(5)
    assert seen == sorted(seen) and seen[-1] > 10, "the summary moved backwards"
    # Nothing lost between summary and window: every fact is in one or the other.
    held = set(FACT.findall(context["summary"])) | {
        f for m in context["messages"] for f in FACT.findall(m["content"])
    }
    asked = {f"fact-{t * 100 + i + 1}" for t in range(3) for i in range(8)} | {"fact-0"}
    assert asked <= held


def test_a_failing_summariser_changes_nothing_and_no_turn_fails(llm_app, fake_llm, redis_client):
    def failing(body):
        if is_summary_request(body):
            return Answer(500, b'{"error": "down"}')
        return completion("answer " * 60)

    fake_llm.respond = failing
    client = llm_app(CONTEXT_TOKENS="200").test_client()
    sid = None
    for n in range(12):
        response = send(client, f"fact-{n} " + "words " * 30, sid)
        assert response.status_code == 200 and not response.get_json()["degraded"]
        sid = response.get_json()["sessionId"]
    wait_for(lambda: sum(is_summary_request(r.body) for r in fake_llm.received) >= 3)
    time.sleep(0.2)
    meta = redis_client.hgetall(f"chat_session:{{{sid}}}")
    assert "summary" not in meta and "summaryThrough" not in meta
    context = context_of(client, sid)
    assert (context["summary"] == "" and context["tokens"] <= 200) or len(context["messages"]) == 2


def test_without_an_llm_there_is_no_summary_and_the_budget_is_the_window(make_app):
    client = make_app({"CONTEXT_TOKENS": "120"}).test_client()
    sid = None
    for n in range(10):
        sid = send(client, f"question {n} " + "x " * 40, sid).get_json()["sessionId"]
    context = context_of(client, sid)
    assert context["summary"] == "" and context["summaryThrough"] == 0
    assert context["tokens"] <= 120 or len(context["messages"]) == 2
    assert [m["type"] for m in context["messages"]][:1] == ["user"]  # whole turns
    ids = [m["id"] for m in context["messages"]]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[-1] == 19


def test_the_retrieval_generator_is_given_only_the_history_its_query_reads(fake_redis):
    # It looks back two questions; decoding CONTEXT_MESSAGES=50 messages per reply was waste.
    app = create_app({"RATE_LIMIT_ENABLED": "0"}, redis_client=fake_redis)
    try:
        client = app.test_client()
        sid = None
        for n in range(8):
            sid = send(client, f"how do I set SESSION_TTL, take {n}?", sid).get_json()["sessionId"]
        ids = [m["id"] for m in context_of(client, sid)["messages"]]
        assert ids == list(range(16 - HISTORY_MESSAGES, 16))
    finally:
        close_app(app)


def test_context_of_an_unknown_session_is_404(make_app):
    client = make_app().test_client()
    response = client.get("/api/session/00000000-0000-4000-8000-000000000000/context")
    assert response.status_code == 404 and response.get_json()["error"] == "session_not_found"


def exact_build(stored, budget: int) -> tuple[list, int]:
    """build_context as it was, counting every turn: the messages chosen and their tokens."""
    used = count_tokens(stored.summary) if stored.summary else 0
    chosen: list = []
    for turn in _pairs(stored.messages):
        cost = sum(count_message_tokens(m) for m in turn)
        if chosen and used + cost > budget:
            break
        chosen[:0] = turn
        used += cost
    return chosen, used


TEXTS = [
    "ok",
    "How do I set SESSION_TTL?",
    "Grüße aus Köln, wie geht's?",
    "会话在哪里存储",
    "👍🏽 thanks!!",
    ".a.b.c.d",
]


@pytest.mark.parametrize("counter", ["quicktok", "estimate"])
def test_bounded_context_chooses_what_exact_counting_chooses(counter, monkeypatch) -> None:
    import random

    from chatbot_sessions.replies import token_count

    if counter == "estimate":
        monkeypatch.setattr(token_count, "_counter", token_count.estimate_tokens)
    rng = random.Random(20261203)
    for case in range(300):
        messages = []
        for position in range(rng.randrange(0, 12)):
            kind = "user" if position % 2 == 0 or rng.random() < 0.1 else "assistant"
            content = " ".join(rng.choice(TEXTS) for _ in range(rng.randrange(1, 40)))
            messages.append({"id": position, "type": kind, "content": content, "timestamp": ""})
        summary = rng.choice(["", "Facts so far: fact-1 fact-2"])
        stored = StoredContext(summary, 0, 0, 0, messages)
        budget = rng.choice([0, 10, 50, 120, 400, 3000])
        context = build_context("s", stored, budget)
        chosen, used = exact_build(stored, budget)
        assert context.messages == chosen, case
        assert context.tokens == used, case
        for message in messages:  # the bound bounds
            assert most_message_tokens(message) >= count_message_tokens(message), case
