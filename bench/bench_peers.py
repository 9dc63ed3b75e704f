"""The service against the floor and two peers, endpoint by endpoint, in one run.

Starts its own redis-server and, under the same gunicorn.conf.py (gthread workers,
``WEB_CONCURRENCY`` of them), four apps on free loopback ports:

- the **floor**: a Flask view doing one Redis ``GET`` (bench/floor_app.py);
- the **service** with its production defaults (request log, metrics, security headers,
  rate limits on, set too high to trip so their Redis calls are paid);
- peer **naive**: one JSON blob per session, ``GET`` + ``SETEX`` per access (bench/peers/);
- peer **langchain**: LangChain's ``RedisChatMessageHistory`` behind Flask (bench/peers/).

Every app holds the same content: each history/validate session got five questions
through that app's own send-message, and send-message runs over 200 sessions started the
same way; replies come from the same extractive generator everywhere. wrk drives each
(target, endpoint) for ``--duration`` seconds, in ``--rounds`` interleaved rounds; figures
are medians, ratios are medians of per-run ratios to their round's floor (the median of
the floor runs measured before each app's endpoints), with their range over the rounds.
Redis CPU per request is the CPU time of Redis's main thread (``INFO cpu``) during a run
over the requests served.
Then the scaling table: floor, history and send with each ``--workers`` count.

The peers need langchain-community, which is never a project dependency: the first run
makes bench/.venv-peers (the project's requirements plus bench/peers/requirements.txt).

    .venv/bin/python bench/bench_peers.py [--duration 5] [--rounds 3] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_http import QUESTION, conversation, send_script, wrk  # noqa: E402
from tests.support.processes import GunicornServer, RedisServer  # noqa: E402

PEERS_VENV = ROOT / "bench" / ".venv-peers"
APPS = {
    "floor": "bench.floor_app:app",
    "service": "wsgi:app",
    "naive": "bench.peers.naive_app:app",
    "langchain": "bench.peers.langchain_app:app",
}
ENDPOINTS = ("create", "validate", "history", "send")
# Production defaults, but limits too high to trip (their Redis calls are paid) and the
# peers' retrieval (BM25), so the comparison is of session handling; bench_layers.py
# shows what RETRIEVAL=hybrid adds to a send.
SERVICE_ENV = {
    "RETRIEVAL": "bm25",
    "RATE_LIMIT_ENABLED": "1",
    "RATE_LIMIT_CREATE": "100000000/minute",
    "RATE_LIMIT_SEND_IP": "100000000/minute",
    "RATE_LIMIT_SEND_SESSION": "100000000/minute",
}


def peers_python() -> str:
    """The benchmark's own interpreter for the peers, made on first use."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    wanted = (ROOT / "requirements.txt").read_text() + (
        ROOT / "bench" / "peers" / "requirements.txt"
    ).read_text()
    if not stamp.exists() or stamp.read_text() != wanted:
        print("making bench/.venv-peers (project requirements + langchain-community) ...")
        venv.create(PEERS_VENV, with_pip=True, clear=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(ROOT / "requirements.txt"),
                "-r",
                str(ROOT / "bench" / "peers" / "requirements.txt"),
            ],
            check=True,
        )
        stamp.write_text(wanted)
    return str(python)


def send_ids(base_url: str, count: int) -> list[str]:
    """``count`` sessions started through the app's own send-message (one turn each)."""
    with requests.Session() as http:
        return [
            http.post(
                f"{base_url}/api/send-message", json={"question": QUESTION}, timeout=10
            ).json()["sessionID"]
            for _ in range(count)
        ]


POST_SCRIPT = 'wrk.method = "POST"\n'


def targets_of(name: str, server: GunicornServer) -> dict[str, tuple[str, str | None]]:
    """(url, wrk script) per endpoint for one app."""
    base = server.base_url
    if name == "floor":
        return {"floor": (f"{base}/floor", None)}
    sid = conversation(base, 5)  # 10 messages
    return {
        "create": (f"{base}/api/session/create", POST_SCRIPT),
        "validate": (f"{base}/api/session/{sid}/validate", None),
        "history": (f"{base}/api/session/{sid}/history?limit=10", None),
        "send": (f"{base}/api/send-message", send_script(send_ids(base, 200))),
    }


def redis_usec(client) -> float:
    """CPU microseconds Redis's main thread has used so far (``INFO cpu``): commands, Lua
    and the network work of answering them. (``INFO commandstats`` would count a script's
    commands twice: inside its EVALSHA and on their own.)"""
    cpu = client.info("cpu")
    return (cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"]) * 1e6


def measured(client, url, duration, connections, script, workdir) -> dict:
    """One wrk run plus the Redis CPU it caused per request."""
    before = redis_usec(client)
    run = wrk(url, duration, connections, script, workdir)
    run["redis_us"] = (redis_usec(client) - before) / max(1, run["requests"])
    return run


def start(apps: dict[str, str], env: dict, workdir: Path, python: str) -> dict:
    servers = {}
    for name, app in apps.items():
        app_env = {**env, **(SERVICE_ENV if name == "service" else {})}
        ready = "/floor" if name == "floor" else "/api/session/00000000/validate"
        interpreter = python if name in ("naive", "langchain") else sys.executable
        server = GunicornServer(app_env, workdir, app=app, ready_path=ready, python=interpreter)
        servers[name] = server.start(timeout=90)
    return servers


def compare(args, client, redis_url, workdir, python) -> dict:
    """Every app and endpoint at the default worker count, interleaved rounds."""
    env = {"REDIS_URL": redis_url, "WEB_CONCURRENCY": str(args.compare_workers)}
    servers = start(APPS, env, workdir, python)
    try:
        targets = {
            (name, endpoint): target
            for name, server in servers.items()
            for endpoint, target in targets_of(name, server).items()
        }
        for url, script in targets.values():  # warm-up: first requests pay imports
            wrk(url, 1, args.connections, script, workdir)
        floor_key = ("floor", "floor")
        floor_url, floor_script = targets[floor_key]
        runs: dict[tuple[str, str], list[dict]] = {key: [] for key in targets}
        # A round's floor: the median of its floor runs, one measured before each app's
        # endpoints. A round takes over a minute and this machine's speed drifts within
        # one (a ratio to one floor run a minute away moved by a tenth), and one floor run
        # now and then is slowed by half: a median of three survives it.
        for _ in range(args.rounds):
            round_floors = []
            for name in [name for name in servers if name != "floor"]:
                round_floors.append(
                    measured(
                        client, floor_url, args.duration, args.connections, floor_script, workdir
                    )
                )
                for key in [key for key in targets if key[0] == name]:
                    url, script = targets[key]
                    runs[key].append(
                        measured(client, url, args.duration, args.connections, script, workdir)
                    )
            floor = sorted(round_floors, key=lambda run: run["rps"])[len(round_floors) // 2]
            runs[floor_key].append(floor)
    finally:
        for server in servers.values():
            server.stop()
    return summarise(runs, runs[floor_key])


def summarise(runs: dict, floor_runs: list[dict]) -> dict:
    """Medians of each target's runs, and of its per-round ratios to that round's floor
    (with their lowest and highest, the spread one run of this script can show)."""
    out = {}
    for (name, endpoint), rounds in runs.items():
        row = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        pairs = list(zip(rounds, floor_runs, strict=True))
        ratios = [r["rps"] / f["rps"] for r, f in pairs]
        row["x_floor"] = statistics.median(ratios)
        row["x_floor_range"] = (min(ratios), max(ratios))
        row["p99_x_floor"] = statistics.median(r["p99_ms"] / f["p99_ms"] for r, f in pairs)
        out[f"{name}/{endpoint}"] = row
    return out


def scaling(args, client, redis_url, workdir) -> dict:
    """Floor, history and send of the service with each worker count."""
    out = {}
    for workers in args.workers:
        env = {"REDIS_URL": redis_url, "WEB_CONCURRENCY": str(workers)}
        servers = start({"floor": APPS["floor"], "service": APPS["service"]}, env, workdir, "")
        try:
            service = targets_of("service", servers["service"])
            targets = {
                "floor": (f"{servers['floor'].base_url}/floor", None),
                "history": service["history"],
                "send": service["send"],
            }
            for url, script in targets.values():
                wrk(url, 1, args.connections, script, workdir)
            out[workers] = {
                name: measured(client, url, args.duration, args.connections, script, workdir)
                for name, (url, script) in targets.items()
            }
        finally:
            for server in servers.values():
                server.stop()
    return out


def report(results: dict, setup: str) -> None:
    print(f"\n{setup}")
    print(
        f"{'app/endpoint':<20}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x floor':>9}"
        f"{'(rounds)':>12}{'p99 x fl':>10}{'redis us':>10}{'non-2xx':>9}"
    )
    for key, r in results["compare"].items():
        low, high = r["x_floor_range"]
        print(
            f"{key:<20}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['x_floor']:>9.2f}"
            f"{f'{low:.2f}-{high:.2f}':>12}{r['p99_x_floor']:>10.2f}{r['redis_us']:>10.1f}"
            f"{r['non_2xx']:>9.0f}"
        )
    # Through each one's ratio to its own floor: the apps are measured one after another
    # in a round, and raw req/s taken a minute apart carry the machine's drift.
    print("\nservice ahead of peers (ratio of their x-floor figures, same run):")
    compare = results["compare"]
    for endpoint in ENDPOINTS:
        ours = compare[f"service/{endpoint}"]["x_floor"]
        ratios = "  ".join(
            f"{peer} {ours / compare[f'{peer}/{endpoint}']['x_floor']:.2f}x"
            for peer in ("naive", "langchain")
        )
        print(f"  {endpoint:<9} {ratios}")
    print("\nscaling with gunicorn workers (req/s; Redis us per request)")
    for workers, row in results["scaling"].items():
        cells = "  ".join(
            f"{name} {r['rps']:>7.0f} ({r['redis_us']:.1f} us)" for name, r in row.items()
        )
        print(f"  {workers} workers: {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--compare-workers", type=int, default=2, help="workers for the comparison")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2, 4],
        help="worker counts for the scaling table, e.g. 1,2,4,8",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk (scripts/install-system-deps.sh)")
    setup = (
        f"{args.rounds} rounds x {args.duration} s, {args.connections} connections, "
        f"{args.compare_workers} workers"
    )
    python = peers_python()
    workdir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    redis_server = RedisServer(workdir / "redis").start()
    try:
        client = redis_server.client()
        client.set("bench:floor", "x" * 64)
        results = {
            "compare": compare(args, client, redis_server.url, workdir, python),
            "scaling": scaling(args, client, redis_server.url, workdir),
        }
    finally:
        redis_server.stop()
    report(results, setup)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_peers.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
