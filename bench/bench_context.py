"""What the token-budgeted context and the rolling summary cost a turn (issue 12).

A turn on a 1,000-message session with the summary on, against a turn on a 10-message
session, measured in the same run: send-message latency (p50/p99), and the LLM calls per
turn (chat and summary). The service runs in-process on its own redis-server, the LLM is
the loopback fake (tests/support/fake_llm.py) answering at once, so what is measured is
our own work: the context read, the budget, the append, the summary job.

    .venv/bin/python bench/bench_context.py [--turns 200] [--long 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_retrieval import percentile  # noqa: E402
from chatbot_sessions import create_app  # noqa: E402
from chatbot_sessions.domain import NewMessage  # noqa: E402
from chatbot_sessions.extensions import close_app, resources  # noqa: E402
from chatbot_sessions.replies.summary import SUMMARY_PROMPT  # noqa: E402
from chatbot_sessions.timestamps import now_ms  # noqa: E402
from tests.support.fake_llm import completion, start_fake_llm  # noqa: E402
from tests.support.processes import RedisServer  # noqa: E402

SUMMARY_MARK = SUMMARY_PROMPT.split(".")[0]


def seed(store, session_id: str, messages: int) -> None:
    """A session of ``messages`` messages of a few sentences each, appended in pairs."""
    store.create(session_id)
    text = "A sentence of an ordinary length in a conversation about the service. " * 3
    for n in range(messages // 2):
        at = now_ms()
        store.append(
            session_id,
            [NewMessage("user", f"question {n}: {text}", at), NewMessage("assistant", text, at)],
        )


def run(turns: int, long: int) -> dict[str, dict[str, float]]:
    llm, stop_llm = start_fake_llm()

    def respond(body):
        if SUMMARY_MARK in body["messages"][0]["content"]:
            return completion("The user asked many questions about the service. " * 4)
        return completion("An answer of an ordinary length about the service. " * 3)

    llm.respond = respond
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp)).start()
        app = create_app(
            {
                "REDIS_URL": redis_server.url,
                "LLM_BASE_URL": llm.base_url,
                "RATE_LIMIT_ENABLED": "0",
                "LOG_LEVEL": "WARNING",
            }
        )
        try:
            store = resources(app).store
            client = app.test_client()
            sessions = {"10 messages": "aaaaaaaa-0000-4000-8000-000000000010"}
            sessions[f"{long} messages, summary on"] = "aaaaaaaa-0000-4000-8000-000000001000"
            seed(store, sessions["10 messages"], 10)
            seed(store, sessions[f"{long} messages, summary on"], long)
            resources(app).chat.summaries.catch_up(sessions[f"{long} messages, summary on"])
            results: dict[str, dict[str, float]] = {}
            timings: dict[str, list[float]] = {name: [] for name in sessions}
            calls = {name: [0, 0] for name in sessions}
            for n in range(turns):  # interleaved, so both see the same machine
                for name, sid in sessions.items():
                    before = len(llm.received)
                    started = time.perf_counter()
                    response = client.post(
                        "/api/send-message",
                        json={"question": f"turn {n}: what about sessions?"},
                        headers={"session-id": sid},
                    )
                    timings[name].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.get_json()
                    # Wait for the summary job so its call is counted against this turn.
                    time.sleep(0.005)
                    new = llm.received[before:]
                    calls[name][0] += sum(SUMMARY_MARK not in r.body["messages"][0]["content"]
                                          for r in new)  # fmt: skip
                    calls[name][1] += sum(SUMMARY_MARK in r.body["messages"][0]["content"]
                                          for r in new)  # fmt: skip
            for name in sessions:
                values = timings[name]
                results[name] = {
                    "p50_ms": statistics.median(values),
                    "p99_ms": percentile(values, 99),
                    "chat_calls_per_turn": calls[name][0] / turns,
                    "summary_calls_per_turn": calls[name][1] / turns,
                }
        finally:
            close_app(app)
            redis_server.stop()
            stop_llm()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--long", type=int, default=1000)
    args = parser.parse_args()
    results = run(args.turns, args.long)
    print(f"{'session':<28} {'p50 ms':>8} {'p99 ms':>8} {'chat/turn':>10} {'summary/turn':>13}")
    for name, row in results.items():
        print(
            f"{name:<28} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
            f"{row['chat_calls_per_turn']:10.2f} {row['summary_calls_per_turn']:13.2f}"
        )
    short, long_row = results.values()
    print(f"p50 ratio long/short: {long_row['p50_ms'] / short['p50_ms']:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
