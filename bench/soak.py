"""Soak: bounded mixed traffic over many sessions, watching errors and worker memory.

Starts its own redis-server and the service under gunicorn on free loopback ports, creates
``--sessions`` sessions, warms up, then drives ``--duration`` seconds of mixed traffic with
wrk (send-message 60 %, keyed send-message 10 % of which half retry an earlier key,
history 20 %, validate 10 %, spread at random over all sessions). It reports throughput,
p50/p99 latency, the error count (non-2xx and socket errors; must be 0) and the RSS of each
gunicorn worker (VmRSS from /proc) at the start, every 10 s and at the end. Everything it
started is stopped. Exit status 1 when any request failed.

    .venv/bin/python bench/soak.py [--duration 60] [--sessions 1000] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import GunicornServer, RedisServer, wait_until  # noqa: E402

QUESTION = "How long does a chat session live when nobody writes to it?"

# Per-thread state in wrk's Lua: each request picks an operation and a session at random.
# Half of the keyed sends retry the key (same session, same body) sent 32 keyed sends ago
# on this thread, long answered since a thread has at most its connections in flight: a
# client's retry after a lost reply, which must get the stored reply, not a new exchange.
WRK_SCRIPT = """
local ids = {%(ids)s}
local body = '%(body)s'
local json = {["Content-Type"] = "application/json"}
local counter, sent = 0, {}
local thread_id = 0

setup = function(thread)
  thread:set("id", %(seed)d + math.random(1000000))
end

init = function(args)
  thread_id = id or 0
  math.randomseed(thread_id)
end

local function send(sid, key)
  local headers = {["Content-Type"] = "application/json", ["session-id"] = sid}
  if key then headers["Idempotency-Key"] = key end
  return wrk.format("POST", "/api/send-message", headers, body)
end

request = function()
  local sid = ids[math.random(#ids)]
  local r = math.random(100)
  if r <= 60 then
    return send(sid, nil)
  elseif r <= 70 then
    if counter > 32 and math.random(2) == 1 then
      local old = sent[(counter - 32) %% 64]
      return send(old[1], old[2])
    end
    counter = counter + 1
    local key = string.format("soak-%%d-%%010d", thread_id, counter)
    sent[counter %% 64] = {sid, key}
    return send(sid, key)
  elseif r <= 90 then
    return wrk.format("GET", "/api/session/" .. sid .. "/history?limit=20")
  else
    return wrk.format("GET", "/api/session/" .. sid .. "/validate")
  end
end
"""


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/<pid>/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def run_wrk(url: str, script: Path, duration: int, connections: int) -> dict:
    """Run wrk and parse its totals, latency percentiles and every kind of error."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    out = subprocess.run(
        [*cmd, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout

    def latency_ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency_ms("50%"),
        "p99_ms": latency_ms("99%"),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(map(int, socket.groups())) if socket else 0),
    }


def sample_rss(workers: list[int], stop: threading.Event, every: float, into: list) -> None:
    """Record the workers' RSS every ``every`` seconds until ``stop`` is set."""
    started = time.monotonic()
    while not stop.wait(every):
        into.append((round(time.monotonic() - started), [rss_kib(pid) for pid in workers]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of soak (default 60)")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5, help="seconds before measuring RSS")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None or RedisServer.binary is None:
        sys.exit("needs wrk and redis-server on PATH (scripts/install-system-deps.sh)")

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        redis_server = RedisServer(workdir / "redis").start()
        service = GunicornServer(
            {
                "REDIS_URL": redis_server.url,
                "WEB_CONCURRENCY": str(args.workers),
                "GUNICORN_THREADS": str(args.threads),
                "LOG_LEVEL": "WARNING",
            },
            workdir,
        )
        try:
            service.start()
            wait_until(lambda: len(service.worker_pids()) == args.workers, 30, what="workers")
            workers = sorted(service.worker_pids())
            with requests.Session() as http:
                ids = [
                    http.post(f"{service.base_url}/api/session/create", timeout=10).json()[
                        "sessionId"
                    ]
                    for _ in range(args.sessions)
                ]
            script = workdir / "soak.lua"
            script.write_text(
                WRK_SCRIPT
                % {
                    "ids": ",".join(f'"{sid}"' for sid in ids),
                    "body": json.dumps({"question": QUESTION}),
                    "seed": int(time.time()),
                }
            )
            warmup = run_wrk(service.base_url, script, args.warmup, args.connections)
            rss_start = [rss_kib(pid) for pid in workers]
            samples: list = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(workers, stop, 10, samples))
            sampler.start()
            result = run_wrk(service.base_url, script, args.duration, args.connections)
            stop.set()
            sampler.join()
            rss_end = [rss_kib(pid) for pid in workers]
            same_workers = sorted(service.worker_pids()) == workers
            with redis_server.client() as client:
                used_memory = client.info("memory")["used_memory"]
                keys = client.dbsize()
        finally:
            service.stop()
            redis_server.stop()

    figures = {
        "duration_s": args.duration,
        "sessions": args.sessions,
        "connections": args.connections,
        "workers": args.workers,
        "threads": args.threads,
        **result,
        "warmup_errors": warmup["errors"],
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_samples_kib": samples,
        "same_worker_pids": same_workers,
        "redis_keys": keys,
        "redis_used_memory_mib": round(used_memory / 2**20, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{figures['requests']} requests in {args.duration}s over {args.sessions} sessions "
            f"({args.connections} connections, {args.workers}x{args.threads} gunicorn)\n"
            f"throughput {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.2f} ms, "
            f"p99 {figures['p99_ms']:.2f} ms, errors {figures['errors']} "
            f"(warm-up {figures['warmup_errors']})\n"
            f"worker RSS KiB start {rss_start} -> end {rss_end}; samples {samples}\n"
            f"same worker pids: {same_workers}; Redis {keys} keys, "
            f"{figures['redis_used_memory_mib']} MiB"
        )
    return 1 if figures["errors"] or warmup["errors"] or not same_workers else 0


if __name__ == "__main__":
    sys.exit(main())
