"""Where a cheap request's instructions go: one layer taken away at a time, under callgrind.

``bench_instructions.py`` counts whole requests; this script counts validate (or another
endpoint, ``--endpoint``) with one part of the request path removed at a time, so each
row's difference to ``full`` is what that part costs. Parts: the access log line, the
metrics, the request id, Flask's before-request hooks and teardown, and the view itself
(replaced by a bare Flask view calling the same store method, then by one doing a plain
``GET``). Production defaults, rate limits on and set too high to trip, ``RETRIEVAL=bm25``.

    .venv/bin/python bench/bench_ablation.py [--endpoint validate] [--requests 50]

Removing a part is done by replacing a function for the length of its row, so the figures
are instructions this code spends, not a supported configuration. About a minute.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def replaced(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.name`` is ``value`` inside the block."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def drive(url: str, endpoint: str, count: int) -> None:
    """Inside callgrind: each row's calls between a zeroing and a dump of the counters."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import bench_layers as layers
    import redis
    from bench_instructions import BUILT_CASES, counted, service_config, set_start_up_aside
    from flask import jsonify

    from chatbot_sessions import extensions
    from chatbot_sessions.ops import logs

    def measure(name: str, call: Callable[[], None]) -> None:
        counted(name, call, count)

    floor = layers.wsgi_caller(layers.floor_app(url), *layers.environ("/floor"))
    app, cases = layers.build_cases(url, service_config(layers))
    call = layers.wsgi_caller(app, *cases[BUILT_CASES[endpoint]])
    set_start_up_aside()
    measure("floor", floor)
    measure("full", call)
    metrics = extensions.resources(app).metrics
    with replaced(metrics, "observe_request", lambda *args: None):
        measure("no_metrics", call)
    with replaced(logs, "log_request", lambda *args: None):
        measure("no_log_line", call)
    with replaced(logs, "request_id_of", lambda environ: "0" * 32):
        measure("no_request_id", call)
    before = dict(app.before_request_funcs)
    app.before_request_funcs.clear()
    measure("no_before_hooks", call)
    app.before_request_funcs.update(before)
    teardown = dict(app.teardown_request_funcs)
    app.teardown_request_funcs.clear()
    measure("no_teardown", call)
    app.teardown_request_funcs.update(teardown)
    if endpoint == "validate":
        store = extensions.resources(app).store
        plain = redis.Redis.from_url(url, decode_responses=True)
        view = "sessions.ValidateSession"

        def bare_store(session_id: str):
            return jsonify({"success": True, "valid": store.touch(session_id)})

        def bare_get(session_id: str):
            return jsonify({"success": True, "valid": plain.get("bench:floor")})

        with replaced(app, "view_functions", {**app.view_functions, view: bare_store}):
            measure("bare_view_store", call)
        with replaced(app, "view_functions", {**app.view_functions, view: bare_get}):
            measure("bare_view_get", call)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint", default="validate", choices=["validate", "create", "history", "send"]
    )
    parser.add_argument("--requests", type=int, default=50, help="calls per row")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (scripts/install-system-deps.sh)")
    sys.path.insert(0, str(ROOT))
    from tests.support.processes import RedisServer

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_instructions import dumped_counts, under_callgrind

    workdir = Path(tempfile.mkdtemp(prefix="bench-ablation-"))
    server = RedisServer(workdir / "redis").start()
    try:
        server.client().set("bench:floor", "x" * 64)
        drive_args = [server.url, args.endpoint, str(args.requests)]
        under_callgrind(Path(__file__).resolve(), drive_args, workdir, ROOT)
    finally:
        server.stop()
    rows = dumped_counts(workdir, args.requests)
    full, floor = rows["full"], rows["floor"]
    print(f"{args.endpoint}: instructions per request (callgrind, {args.requests} calls per row)")
    for name, value in sorted(rows.items(), key=lambda item: -item[1]):
        print(f"{name:<18}{value:>12,.0f} {value / floor:>5.2f}x floor  {value - full:>+10,.0f}")


if __name__ == "__main__":
    main()
