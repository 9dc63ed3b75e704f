"""Streamed against unstreamed replies: how soon a user sees something, under concurrency.

Starts its own redis-server, a fake OpenAI-compatible LLM on loopback
(tests/support/fake_llm.py) and the service under gunicorn, then drives ``--conversations``
client threads at once, each a conversation of ``--turns`` questions asked one after
another. The model writes every reply as ``--chunks`` chunks ``--gap`` seconds apart; asked
with ``"stream": false`` it answers the same text in one body after the same total time, so
both arms wait for the same generation and differ only in how the reply is delivered.

- streamed arm (``Accept: text/event-stream``): time to the ``start`` event, to the first
  ``delta`` and to ``done``;
- unstreamed arm (JSON): time to the whole JSON answer.

Arms alternate over ``--rounds`` (streamed first in even rounds, JSON first in odd ones), so
a slowdown of the shared machine does not land on one arm. Every reply is checked: status
200, the model's text, not degraded; exit status 1 when any request failed.

    .venv/bin/python bench/bench_streaming.py [--conversations 16] [--turns 10]
        [--chunks 20] [--gap 0.05] [--workers 2] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_retrieval import percentile  # noqa: E402
from tests.support.fake_llm import Streamed, completion, start_fake_llm  # noqa: E402
from tests.support.processes import GunicornServer, RedisServer  # noqa: E402
from tests.support.streams import Event, parse_events  # noqa: E402
from tests.support.threads import run_in_threads  # noqa: E402

EVENT_STREAM = "text/event-stream"
QUESTIONS = [
    "How long does a chat session live when nobody writes to it?",
    "Can I run the service behind nginx?",
    "What happens when Redis is down?",
    "How do I size gunicorn threads for streamed replies?",
    "Where are the sessions stored?",
]
#: Per-arm figures (milliseconds from sending the request), in table order.
FIGURES = {
    "streamed": ("start", "first_delta", "done"),
    "unstreamed": ("answer",),
}


class ReplyFailed(Exception):
    """A request did not end with the model's whole reply (status, event or text wrong)."""


def ask_streamed(
    http: requests.Session,
    url: str,
    question: str,
    session_id: str | None,
    text: str,
    timeout: float,
) -> tuple[dict[str, float], str]:
    """One streamed turn: ms to ``start``, first ``delta`` and ``done``; the session id."""
    headers = {"Accept": EVENT_STREAM, **({"session-id": session_id} if session_id else {})}
    seen: dict[str, float] = {}
    last: Event | None = None
    started = time.perf_counter()
    with http.post(
        url, json={"question": question}, headers=headers, stream=True, timeout=timeout
    ) as response:
        if response.status_code != 200:
            raise ReplyFailed(f"streamed: HTTP {response.status_code}")
        # Read to the end (not just to ``done``) so the connection is kept for the next turn.
        for item in parse_events(response.iter_content(chunk_size=None)):
            if isinstance(item, Event):
                seen.setdefault(item.name, (time.perf_counter() - started) * 1000)
                last = item
    if last is None or last.name != "done" or "start" not in seen or "delta" not in seen:
        raise ReplyFailed(f"streamed: events {sorted(seen)}, last {last and last.name}")
    check_reply(last.data, text)
    timing = {"start": seen["start"], "first_delta": seen["delta"], "done": seen["done"]}
    return timing, last.data["sessionId"]


def ask_json(
    http: requests.Session,
    url: str,
    question: str,
    session_id: str | None,
    text: str,
    timeout: float,
) -> tuple[dict[str, float], str]:
    """One unstreamed turn: ms to the whole JSON answer; the session id."""
    headers = {"session-id": session_id} if session_id else {}
    started = time.perf_counter()
    response = http.post(url, json={"question": question}, headers=headers, timeout=timeout)
    body = response.json() if response.status_code == 200 else {}
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise ReplyFailed(f"unstreamed: HTTP {response.status_code}")
    check_reply(body, text)
    return {"answer": elapsed}, body["sessionId"]


def check_reply(body: dict[str, Any], text: str) -> None:
    """The reply is the model's whole text, not the extractive fallback."""
    if body.get("reply") != text or body.get("degraded"):
        raise ReplyFailed(f"reply {body.get('reply')!r:.60}, degraded={body.get('degraded')}")


ASK: dict[str, Callable[..., tuple[dict[str, float], str]]] = {
    "streamed": ask_streamed,
    "unstreamed": ask_json,
}


def run_arm(
    base_url: str, arm: str, conversations: int, turns: int, text: str, timeout: float
) -> tuple[list[dict[str, float]], list[str]]:
    """``conversations`` threads at once, each asking ``turns`` questions in one session."""
    url = f"{base_url}/api/send-message"
    timings: list[dict[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(conversations)

    def conversation(_: int) -> None:
        with requests.Session() as http:
            barrier.wait()
            session_id = None
            for turn in range(turns):
                question = QUESTIONS[turn % len(QUESTIONS)]
                try:
                    timing, session_id = ASK[arm](http, url, question, session_id, text, timeout)
                except (ReplyFailed, requests.RequestException, ValueError) as exc:
                    with lock:
                        errors.append(f"{arm}: {exc}")
                    continue
                with lock:
                    timings.append(timing)

    run_in_threads(conversation, conversations, indexed=True, timeout=timeout * turns)
    return timings, errors


def summarise(values: Sequence[float]) -> dict[str, float]:
    """p50 and p99 (nearest rank), in ms."""
    return {"p50": round(percentile(values, 50), 1), "p99": round(percentile(values, 99), 1)}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Start Redis, the fake LLM and gunicorn, run the arms, stop everything; the figures."""
    deltas = [f"word{n} " for n in range(args.chunks)]
    text = "".join(deltas).strip()
    whole = args.chunks * args.gap
    llm, stop_llm = start_fake_llm()
    # Same text, same total time: the streamed answer's last chunk and the JSON body leave
    # the model together; only the first chunk comes earlier.
    llm.respond = lambda body: (
        Streamed(deltas, gap=args.gap)
        if body.get("stream")
        else replace(completion(text), delay=whole)
    )
    llm_timeout = max(10.0, 3 * whole)
    workdir = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    redis_server = RedisServer(workdir / "redis")
    env = {
        "REDIS_URL": redis_server.url,
        "LLM_BASE_URL": llm.base_url,
        "LLM_TIMEOUT": str(llm_timeout),
        "RATE_LIMIT_ENABLED": "0",
        "WEB_CONCURRENCY": str(args.workers),
        "GUNICORN_THREADS": str(max(16, args.conversations)),
        "MAX_GENERATIONS": str(max(16, args.conversations)),
    }
    load_before = os.getloadavg()[0]
    samples: dict[str, list[dict[str, float]]] = {arm: [] for arm in FIGURES}
    errors: list[str] = []
    service = GunicornServer(env, workdir)
    try:
        redis_server.start()
        service.start()
        request_timeout = 2 * llm_timeout + 10
        for arm in FIGURES:  # warm-up, discarded: each worker's first replies pay imports
            run_arm(service.base_url, arm, args.conversations, 1, text, request_timeout)
        for round_ in range(args.rounds):
            arms = list(FIGURES) if round_ % 2 == 0 else list(reversed(FIGURES))
            for arm in arms:
                timings, failed = run_arm(
                    service.base_url, arm, args.conversations, args.turns, text, request_timeout
                )
                samples[arm] += timings
                errors += failed
    finally:
        service.stop()
        redis_server.stop()
        stop_llm()

    result: dict[str, Any] = {
        "conversations": args.conversations,
        "turns": args.turns,
        "rounds": args.rounds,
        "workers": args.workers,
        "chunks": args.chunks,
        "gap_ms": round(args.gap * 1000, 1),
        "model_first_chunk_ms": round(args.gap * 1000, 1),
        "model_whole_ms": round(whole * 1000, 1),
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "errors": len(errors),
        "error_samples": errors[:5],
    }
    for arm, figures in FIGURES.items():
        result[arm] = {"requests": len(samples[arm])}
        for figure in figures:
            values = [timing[figure] for timing in samples[arm]]
            if values:
                result[arm][figure] = summarise(values)
    if "first_delta" in result["streamed"] and "answer" in result["unstreamed"]:
        result["first_delta_over_answer"] = {
            q: round(result["streamed"]["first_delta"][q] / result["unstreamed"]["answer"][q], 3)
            for q in ("p50", "p99")
        }
    return result


def report(result: dict[str, Any]) -> None:
    """The figures as a table."""
    print(
        f"{result['conversations']} conversations x {result['turns']} turns x "
        f"{result['rounds']} rounds on {result['workers']} gunicorn workers; model: "
        f"{result['chunks']} chunks {result['gap_ms']:g} ms apart (first chunk at "
        f"{result['model_first_chunk_ms']:g} ms, whole reply at {result['model_whole_ms']:g} ms)"
    )
    print(f"{'arm':<12}{'time to':<14}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}")
    for arm, figures in FIGURES.items():
        for figure in figures:
            if figure in result[arm]:
                r = result[arm][figure]
                print(
                    f"{arm:<12}{figure:<14}{r['p50']:>10.1f}{r['p99']:>10.1f}"
                    f"{result[arm]['requests']:>10}"
                )
    if "first_delta_over_answer" in result:
        ratio = result["first_delta_over_answer"]
        print(f"first delta / JSON answer: p50 {ratio['p50']:.3f}, p99 {ratio['p99']:.3f}")
    print(f"errors: {result['errors']}   ({result['cpus']} CPUs, load {result['load_before']})")
    for error in result["error_samples"]:
        print(f"  {error}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run the benchmark, print it; 1 when any request failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=16, help="concurrent clients")
    parser.add_argument("--turns", type=int, default=10, help="questions per conversation")
    parser.add_argument("--chunks", type=int, default=20, help="chunks the model writes")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between chunks")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both arms")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if RedisServer.binary is None:
        sys.exit("redis-server is not installed (scripts/install-system-deps.sh)")
    result = bench(args)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
