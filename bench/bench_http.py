"""HTTP benchmark of the session service against a floor measured in the same run.

Starts its own redis-server and two gunicorn servers (the service, and bench/floor_app.py:
a Flask view doing one Redis GET) on free loopback ports, drives them with wrk, and prints
requests/s and p50/p99 for history and send-message next to the floor, then send-message
latency on sessions holding 10, 1000 and 3000 messages, and MEMORY USAGE of a 20-message
session next to the seed's JSON-blob layout. Everything is stopped at the end.

    .venv/bin/python bench/bench_http.py [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatbot_sessions.domain import NewMessage  # noqa: E402
from chatbot_sessions.sessions.ids import new_session_id  # noqa: E402
from chatbot_sessions.sessions.store import SessionStore  # noqa: E402
from chatbot_sessions.timestamps import now_ms  # noqa: E402
from tests.support.processes import GunicornServer, RedisServer  # noqa: E402

QUESTION = "How do I configure the session TTL when running behind nginx with gunicorn?"
ANSWER = (
    "Set SESSION_TTL in seconds; every access to a session refreshes it, so active chats "
    "never expire. nginx needs no change."
)


def wrk(url: str, duration: int, connections: int, script: str | None, workdir: Path) -> dict:
    """Run wrk and parse requests/s, p50 and p99 (ms) from its --latency report."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script:
        path = workdir / f"wrk-{abs(hash(script))}.lua"
        path.write_text(script)
        cmd += ["-s", str(path)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout

    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def median_run(runs: list[dict], floor_runs: list[dict]) -> dict:
    """Median of each figure over the rounds, plus the median of per-round ratios to the floor."""
    merged = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    merged["x_floor"] = statistics.median(
        run["rps"] / floor["rps"] for run, floor in zip(runs, floor_runs, strict=True)
    )
    merged["rounds_rps"] = [round(run["rps"]) for run in runs]
    return merged


def send_script(session_ids: list[str]) -> str:
    """A wrk script posting questions round-robin over many sessions."""
    ids = ",".join(f'"{sid}"' for sid in session_ids)
    body = json.dumps({"question": QUESTION}).replace('"', '\\"')
    return f"""
local ids = {{{ids}}}
local i = 0
request = function()
  i = i + 1
  local headers = {{["Content-Type"] = "application/json", ["session-id"] = ids[(i % #ids) + 1]}}
  return wrk.format("POST", "/api/send-message", headers, "{body}")
end
"""


def fill(store: SessionStore, session_id: str, messages: int) -> None:
    """Create a session already holding ``messages`` messages (bulk, not through HTTP)."""
    store.create(session_id)
    batch = []
    for n in range(messages // 2):
        at = now_ms()
        batch += [NewMessage("user", f"{QUESTION} #{n}", at), NewMessage("assistant", ANSWER, at)]
        if len(batch) >= 200:
            store.append(session_id, batch)
            batch = []
    if batch:
        store.append(session_id, batch)


def send_latency(base_url: str, session_id: str, count: int) -> dict:
    """Sequential send-message latency (ms) on one session: a single client, no queueing."""
    timings = []
    with requests.Session() as http:
        for _ in range(count):
            started = time.perf_counter()
            response = http.post(
                f"{base_url}/api/send-message",
                json={"question": QUESTION},
                headers={"session-id": session_id},
                timeout=10,
            )
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and response.json()["sessionId"] == session_id
    timings.sort()
    return {"p50_ms": statistics.median(timings), "p99_ms": timings[int(len(timings) * 0.99) - 1]}


def seed_blob_bytes(client, session_id: str, history: dict) -> int:
    """MEMORY USAGE of the seed's layout for the same session: one JSON blob under SETEX."""
    blob = json.dumps(
        {
            "sessionId": session_id,
            "createdAt": history["createdAt"],
            "lastActivity": history["lastActivity"],
            "messages": [
                {k: m[k] for k in ("type", "content", "timestamp")} for m in history["messages"]
            ],
        }
    )
    key = f"seed:chat_session:{session_id}"
    client.set(key, blob, ex=3600)
    return client.memory_usage(key, samples=0)


def session_bytes(client, session_id: str) -> int:
    """MEMORY USAGE summed over every key of one session (found by its hash tag)."""
    keys = client.keys(f"chat_session:{{{session_id}}}*")  # bench-only: our own server
    return sum(client.memory_usage(key, samples=0) for key in keys)


def memory(client, store: SessionStore, base_url: str) -> dict:
    """A 20-message session: our keys vs the seed's JSON blob of the same messages.

    ``fixed``: 60-character questions and 100-character answers, sizes that make the seed's
    blob about 3.2 KB as the issue describes. ``live``: ten turns through the running
    service with its default generator, sources included.
    """
    sid = new_session_id()
    store.create(sid)
    at = now_ms()
    for n in range(10):
        question = f"Question {n:02d}: " + "q" * 47
        answer = f"Answer {n:02d}: " + "a" * 89
        store.append(sid, [NewMessage("user", question, at), NewMessage("assistant", answer, at)])
    fixed_history = {**_as_dict(store.read(sid))}
    fixed = {
        "ours": session_bytes(client, sid),
        "seed": seed_blob_bytes(client, sid, fixed_history),
    }

    live_sid = conversation(base_url, 10)
    history = requests.get(f"{base_url}/api/session/{live_sid}/history", timeout=10).json()
    live = {
        "ours": session_bytes(client, live_sid),
        "seed": seed_blob_bytes(client, live_sid, history),
        "with_sources": any("sources" in m for m in history["messages"]),
    }
    return {"fixed": fixed, "live": live}


def conversation(base_url: str, turns: int) -> str:
    """A session holding ``turns`` questions and their answers, made through send-message."""
    with requests.Session() as http:
        sid = None
        for _ in range(turns):
            headers = {"session-id": sid} if sid else {}
            sid = http.post(
                f"{base_url}/api/send-message",
                json={"question": QUESTION},
                headers=headers,
                timeout=10,
            ).json()["sessionID"]
    return sid


def _as_dict(page) -> dict:
    return {
        "createdAt": page.created_at,
        "lastActivity": page.last_activity,
        "messages": page.messages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the service (repeatable), e.g. RATE_LIMIT_ENABLED=0",
    )
    parser.add_argument("--latency-requests", type=int, default=200)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk (scripts/install-system-deps.sh)")

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    env = {"REDIS_URL": redis_server.url, "MAX_MESSAGES_PER_SESSION": "5000"}
    # Production defaults, except limits high enough never to trip: their checks are paid.
    service_env = {
        **env,
        "RATE_LIMIT_ENABLED": "1",
        "RATE_LIMIT_CREATE": "100000000/minute",
        "RATE_LIMIT_SEND_IP": "100000000/minute",
        "RATE_LIMIT_SEND_SESSION": "100000000/minute",
        # The request path, as the peers comparison; --service-env RETRIEVAL=hybrid for the
        # default's cost (a question asked again is answered from the encoder's memo).
        "RETRIEVAL": "bm25",
    }
    extra = dict(item.split("=", 1) for item in args.service_env)
    service = GunicornServer({**service_env, **extra}, workdir).start()
    floor = GunicornServer(env, workdir, app="bench.floor_app:app", ready_path="/floor")
    try:
        floor.start()
        client = redis_server.client()
        client.set("bench:floor", "x" * 64)
        store = SessionStore(client, ttl=3600, max_messages=5000)
        history_sid = new_session_id()
        fill(store, history_sid, 10)
        send_ids = [new_session_id() for _ in range(200)]
        for sid in send_ids:
            store.create(sid)

        targets = {
            "floor": (f"{floor.base_url}/floor", None),
            "history": (f"{service.base_url}/api/session/{history_sid}/history", None),
            "send_message": (f"{service.base_url}/api/send-message", send_script(send_ids)),
        }
        # Interleaved rounds: a machine-wide slowdown hits the floor and the service alike,
        # so each round's ratio is fair even when absolute numbers drift between rounds.
        for url, script in targets.values():  # warm-up, discarded: first requests pay imports
            wrk(url, 2, args.connections, script, workdir)
        rounds: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, script) in targets.items():
                rounds[name].append(wrk(url, args.duration, args.connections, script, workdir))
        results = {name: median_run(runs, rounds["floor"]) for name, runs in rounds.items()}
        latency = {}
        for size in (10, 1000, 3000):
            sid = new_session_id()
            fill(store, sid, size)
            latency[size] = send_latency(service.base_url, sid, args.latency_requests)
        results["send_latency_by_session_size"] = latency
        results["memory_20_messages"] = memory(client, store, service.base_url)
    finally:
        service.stop()
        floor.stop()
        redis_server.stop()

    report(results)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_http.json").write_text(json.dumps(results, indent=2))


def report(results: dict) -> None:
    print(f"{'endpoint':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'x floor':>10}{'non-2xx':>9}")
    for name in ("floor", "history", "send_message"):
        r = results[name]
        print(
            f"{name:<14}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            f"{r['x_floor']:>10.2f}{r['non_2xx']:>9.0f}   rounds: {r['rounds_rps']}"
        )
    lat = results["send_latency_by_session_size"]
    print("\nsend-message latency by session size (sequential, one client)")
    for size, r in lat.items():
        print(f"  {size:>5} messages: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms")
    print(f"  p50 ratio 3000/10: {lat[3000]['p50_ms'] / lat[10]['p50_ms']:.2f}")
    print("\nMEMORY USAGE of a 20-message session (all its keys) vs the seed's JSON blob")
    for name, mem in results["memory_20_messages"].items():
        print(
            f"  {name:<6} ours {mem['ours']:>5} B   seed {mem['seed']:>5} B   "
            f"ratio {mem['ours'] / mem['seed']:.2f}"
            + ("   (answers carry sources)" if mem.get("with_sources") else "")
        )


if __name__ == "__main__":
    main()
