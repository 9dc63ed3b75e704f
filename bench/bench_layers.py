"""CPU per request, in-process, by endpoint and configuration: where the time goes.

The HTTP benchmark (bench_http.py) gives throughput against the one-GET floor, but a
machine shared by wrk, Redis and gunicorn is noisy. This script calls the WSGI app
directly (no HTTP server, no load generator) against its own redis-server and reports the
process CPU time per request, which is stable from run to run, for the floor view and the
service's endpoints under a few configurations: production defaults (rate limits on, set
too high to trip), without rate limits, and without rate limits or request log lines.

    .venv/bin/python bench/bench_layers.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from flask import Flask, jsonify  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from chatbot_sessions import create_app  # noqa: E402
from tests.support.processes import RedisServer  # noqa: E402

QUESTION = "How do I configure the session TTL when running behind nginx with gunicorn?"
HIGH_LIMITS = {
    "RATE_LIMIT_CREATE": "100000000/minute",
    "RATE_LIMIT_SEND_IP": "100000000/minute",
    "RATE_LIMIT_SEND_SESSION": "100000000/minute",
}
# The request path is compared with RETRIEVAL=bm25, the retrieval the floor-to-peers
# comparison shares (bench_peers.py); the hybrid row shows what the question's embedding
# adds, with a new question every call so its memo never answers.
CONFIGS = {
    "defaults (bm25)": {"RATE_LIMIT_ENABLED": "1", "RETRIEVAL": "bm25", **HIGH_LIMITS},
    "defaults, hybrid": {"RATE_LIMIT_ENABLED": "1", "RETRIEVAL": "hybrid", **HIGH_LIMITS},
    "no rate limits": {"RATE_LIMIT_ENABLED": "0", "RETRIEVAL": "bm25"},
    "no limits, no request log": {
        "RATE_LIMIT_ENABLED": "0",
        "RETRIEVAL": "bm25",
        "LOG_LEVEL": "WARNING",
    },
}


def wsgi_caller(app: Callable, environ: dict, body: bytes | Iterator[bytes]) -> Callable[[], None]:
    """A function making one WSGI call of ``app`` per invocation, response read to the end;
    an iterator of bodies gives each call its own (a question never asked before)."""
    bodies = itertools.repeat(body) if isinstance(body, bytes) else body

    def call() -> None:
        data = next(bodies)
        env = dict(environ, CONTENT_LENGTH=str(len(data)))
        env["wsgi.input"] = io.BytesIO(data)
        b"".join(app(env, lambda *args: None))

    return call


def cpu_per_call(app: Callable, environ: dict, body: bytes | Iterator[bytes], count: int) -> float:
    """Mean process CPU time (microseconds) of one WSGI call, after a short warm-up."""
    call = wsgi_caller(app, environ, body)
    for _ in range(min(300, count)):
        call()
    started = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - started) / count * 1e6


def environ(path: str, method: str = "GET", **kwargs) -> tuple[dict, bytes]:
    """A reusable WSGI environ and its body."""
    env = EnvironBuilder(path=path, method=method, **kwargs).get_environ()
    return env, env["wsgi.input"].read()


def floor_app(url: str) -> Flask:
    """The same floor as bench/floor_app.py: one Redis GET, returned as JSON."""
    app = Flask("floor")
    client = redis.Redis.from_url(url, decode_responses=True)

    @app.get("/floor")
    def floor():
        return jsonify({"success": True, "value": client.get("bench:floor")})

    return app


def build_cases(url: str, config: dict) -> tuple[Callable, dict]:
    """One app built with ``config`` and the request (environ, body) of each endpoint."""
    app = create_app({"REDIS_URL": url, **config})
    for handler in logging.getLogger().handlers:  # keep the log lines, drop the terminal
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())
    client = app.test_client()
    sid = client.post("/api/session/create").get_json()["sessionId"]
    for _ in range(5):
        client.post("/api/send-message", json={"question": QUESTION}, headers={"session-id": sid})
    cases = {
        "healthz": environ("/healthz"),
        "validate": environ(f"/api/session/{sid}/validate"),
        "create": environ("/api/session/create", "POST"),
        "history": environ(f"/api/session/{sid}/history?limit=10"),
        "send-message": environ(
            "/api/send-message", "POST", json={"question": QUESTION}, headers={"session-id": sid}
        ),
    }
    send_env, _ = cases["send-message"]
    # Never the same text twice, in any round: no memo (the hybrid encoder's) can answer.
    fresh = (json.dumps({"question": f"{QUESTION} (take {n})"}).encode() for n in itertools.count())
    cases["send, new questions"] = (send_env, fresh)
    return app, cases


def measure_all(url: str, count: int, rounds: int) -> dict[str, dict[str, float]]:
    """Every configuration's CPU per endpoint: the lowest of ``rounds`` interleaved rounds,
    the figure least disturbed by whatever else the machine runs."""
    built = {name: build_cases(url, config) for name, config in CONFIGS.items()}
    best: dict[str, dict[str, float]] = {name: {} for name in CONFIGS}
    for _ in range(rounds):
        for name, (app, cases) in built.items():
            for case, (env, body) in cases.items():
                value = cpu_per_call(app, env, body, count)
                best[name][case] = min(value, best[name].get(case, value))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (lowest kept)")
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-layers-"))).start()
    try:
        server.client().set("bench:floor", "x" * 64)
        env, body = environ("/floor")
        floor_view = floor_app(server.url)
        floor = min(cpu_per_call(floor_view, env, body, args.requests) for _ in range(args.rounds))
        results = measure_all(server.url, args.requests, args.rounds)
        floor = min(floor, cpu_per_call(floor_view, env, body, args.requests))
    finally:
        server.stop()
    endpoints = list(next(iter(results.values())))
    print(f"CPU per request in microseconds (floor view: {floor:.0f} us; lowest of {args.rounds})")
    print(f"{'configuration':<27}" + "".join(f"{name[:13]:>14}" for name in endpoints))
    for name, row in results.items():
        print(f"{name:<27}" + "".join(f"{row[e]:>8.0f} {row[e] / floor:>4.1f}x" for e in endpoints))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_layers.json").write_text(json.dumps({"floor_us": floor, **results}, indent=2))


if __name__ == "__main__":
    main()
