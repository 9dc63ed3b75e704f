"""Streamed replies end to end: gunicorn (two workers) on a real Redis, a streaming LLM on
loopback speaking the OpenAI format, SSE read over real sockets."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.fake_llm import Streamed
from tests.support.processes import wait_until
from tests.support.streams import Event, parse_events

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.slow]

DELTAS = [f"word{n} " for n in range(12)]
GAP = 0.15  # seconds between the model's chunks: the whole answer takes about 1.8 s


@pytest.fixture
def service(gunicorn_server, fake_llm):
    fake_llm.respond = lambda body: Streamed(DELTAS, gap=GAP)
    return gunicorn_server(
        LLM_BASE_URL=fake_llm.base_url,
        LLM_TIMEOUT="10",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="4",
    )


def open_stream(base: str, question: str, **headers: str) -> requests.Response:
    response = requests.post(
        f"{base}/api/send-message",
        json={"question": question},
        headers={"Accept": "text/event-stream", **headers},
        stream=True,
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def timed_events(response: requests.Response):
    for item in parse_events(response.iter_content(chunk_size=None)):
        if isinstance(item, Event):
            yield time.monotonic(), item


def history(base: str, sid: str) -> list[dict]:
    return requests.get(f"{base}/api/session/{sid}/history", timeout=5).json()["messages"]


def test_deltas_arrive_as_the_model_writes_them_and_done_is_what_is_stored(service):
    started = time.monotonic()
    seen = list(timed_events(open_stream(service.base_url, "hello")))
    names = [event.name for _, event in seen]
    assert names == ["start"] + ["delta"] * len(DELTAS) + ["done"]
    first_delta = seen[1][0] - started
    last_delta = seen[-2][0] - started
    assert first_delta < 0.7 and last_delta - first_delta > 0.6 * GAP * (len(DELTAS) - 1)
    text = "".join(event.data["text"] for _, event in seen[1:-1])
    done = seen[-1][1].data
    assert text == "".join(DELTAS).strip() and done["reply"] == text and not done["degraded"]
    assert history(service.base_url, done["sessionId"])[-1]["content"] == text


def test_a_reader_who_leaves_is_resumed_by_another_server(service, gunicorn_server, fake_llm):
    """Start on one gunicorn, resume on another (other processes, same Redis)."""
    other = gunicorn_server(LLM_BASE_URL=fake_llm.base_url, WEB_CONCURRENCY="1")
    assert not (other.worker_pids() & service.worker_pids())
    response = open_stream(service.base_url, "hello")
    events = timed_events(response)
    start = next(events)[1]
    second_delta = [next(events)[1] for _ in range(2)][-1]
    response.close()  # the client goes away after two deltas
    sid, reply_id = start.data["sessionId"], start.data["replyId"]
    resumed = requests.get(
        f"{other.base_url}/api/session/{sid}/replies/{reply_id}/events",
        headers={"Last-Event-ID": str(second_delta.id)},
        stream=True,
        timeout=10,
    )
    rest = [event for _, event in timed_events(resumed)]
    assert rest[0].id == second_delta.id + 1 and rest[-1].name == "done"
    text = "".join(e.data["text"] for e in rest if e.name == "delta")
    full = "".join(DELTAS).strip()
    assert start.data["sessionId"] == rest[-1].data["sessionId"]
    assert full.endswith(text) and rest[-1].data["reply"] == full
    wait_until(lambda: len(history(other.base_url, sid)) == 2, 10, what="turn stored")
    assert history(other.base_url, sid)[-1]["content"] == full


def test_stop_stores_the_partial_answer_marked_stopped(service):
    response = open_stream(service.base_url, "hello")
    events = timed_events(response)
    start = next(events)[1]
    next(events)
    sid, reply_id = start.data["sessionId"], start.data["replyId"]
    stopped = requests.post(
        f"{service.base_url}/api/session/{sid}/replies/{reply_id}/stop", timeout=5
    )
    assert stopped.status_code == 202
    done = [event for _, event in events][-1]
    assert done.name == "done" and done.data["stopped"] is True
    assert 0 < len(done.data["reply"]) < len("".join(DELTAS).strip())
    last = history(service.base_url, sid)[-1]
    assert last["stopped"] is True and last["content"] == done.data["reply"]
