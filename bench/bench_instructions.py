"""Instructions per request, by endpoint, under callgrind: CPU cost that no noisy neighbour moves.

``bench_layers.py`` measures process CPU time, which on a shared virtual machine moves by
a third from one run to the next. Callgrind counts the instructions the Python process
executes (not Redis's), the same count for the same code and inputs whatever else the
machine does. The script runs the floor view and the service's endpoints (production
defaults, rate limits on and set too high to trip) under ``valgrind --tool=callgrind``,
zeroes the counters before each endpoint's calls and dumps them after (less what a dump of
calls that do nothing counts: the counting's own cost), and prints
instructions per request and the ratio to the floor. With ``--baseline REV`` it does the
same for a git revision of the package (checked out in a temporary worktree) in the same
run, so a change's effect is one column against the other.

    .venv/bin/python bench/bench_instructions.py [--requests 50] [--baseline 866b7d2]

Needs valgrind (scripts/install-system-deps.sh installs it); about a minute per tree.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("floor", "validate", "create", "history", "send")
#: A dump of calls that do nothing: what the counting itself adds to every dump (the rest
#: of ``subprocess.run`` after ``callgrind_control -z`` returns, about 500,000
#: instructions, 10,000 a call at 50 calls), taken off every row.
OFFSET = "offset"
#: Our endpoint names -> the requests bench_layers.build_cases makes for them.
BUILT_CASES = {
    "validate": "validate",
    "create": "create",
    "history": "history",
    "send": "send-message",
}


def drive(tree: str, url: str, count: int) -> None:
    """Inside callgrind: build the app of ``tree`` and call each endpoint ``count`` times,
    with the counters zeroed before and dumped after each endpoint."""
    sys.path[:0] = [tree, str(ROOT / "bench")]
    # The package of ``tree`` first (imported by name, so no import sorter reorders it):
    # bench_layers puts this checkout on the path too, and gets the package already loaded.
    importlib.import_module("chatbot_sessions")
    layers = importlib.import_module("bench_layers")  # floor view and request builder
    print("measuring", sys.modules["chatbot_sessions"].__file__, file=sys.stderr)

    app, built = layers.build_cases(url, service_config(layers))
    cases = {
        "floor": (layers.floor_app(url), *layers.environ("/floor")),
        **{name: (app, *built[case]) for name, case in BUILT_CASES.items()},
    }
    set_start_up_aside()
    counted(OFFSET, lambda: None, count)
    for name, (wsgi, environ, body) in cases.items():
        counted(name, layers.wsgi_caller(wsgi, environ, body), count)


def service_config(layers: Any) -> dict[str, str]:
    """Production defaults with limits too high to trip, and RETRIEVAL=bm25, as the peers
    comparison: the request path, not the question encoder."""
    return {"RATE_LIMIT_ENABLED": "1", "RETRIEVAL": "bm25", **layers.HIGH_LIMITS}


def set_start_up_aside() -> None:
    """What start-up allocated is set aside: a full collection over it, landing in whichever
    row happens to trigger it, moved a row by up to 30,000 instructions per request."""
    gc.collect()
    gc.freeze()


def counted(name: str, call: Callable[[], None], count: int) -> None:
    """Inside callgrind: ``count`` calls between a zeroing of the counters and a dump named
    ``name``, after 20 warm-up calls (first calls fill caches and compile regexes)."""
    pid = str(os.getpid())
    for _ in range(20):
        call()
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    for _ in range(count):
        call()
    subprocess.run(["callgrind_control", "-d", name, pid], check=True, capture_output=True)


def under_callgrind(script: Path, args: list[str], out: Path, cwd: Path) -> str:
    """Run ``script --drive ARGS`` under callgrind, its dumps in ``out``; its stderr."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out"]
    command += [sys.executable, str(script), "--drive", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd=cwd).stderr


def measure(tree: Path, url: str, count: int, workdir: Path) -> dict[str, float]:
    """Instructions per request of each endpoint of the package in ``tree``."""
    out = workdir / f"cg-{abs(hash(str(tree)))}"
    out.mkdir()
    log = under_callgrind(Path(__file__).resolve(), [str(tree), url, str(count)], out, tree)
    print(next(line for line in log.splitlines() if line.startswith("measuring")))
    counts = dumped_counts(out, count)
    return {k: v - counts[OFFSET] for k, v in counts.items() if k in ENDPOINTS}


def dumped_counts(folder: Path, count: int) -> dict[str, float]:
    """Instructions per call of each dump callgrind wrote into ``folder`` (``callgrind_control
    -d NAME``), by NAME: the dump's total over ``count`` calls."""
    result = {}
    for dump in folder.glob("cg.out.*"):
        text = dump.read_text(errors="replace")
        name = re.search(r"^desc: Trigger: .*dump (\w+)", text, re.M)
        total = re.search(r"^summary: (\d+)", text, re.M)
        if name and total:
            result[name.group(1)] = int(total.group(1)) / count
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="calls per endpoint")
    parser.add_argument("--baseline", help="a git revision to measure beside the working tree")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (scripts/install-system-deps.sh)")
    sys.path.insert(0, str(ROOT))
    from tests.support.processes import RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    server = RedisServer(workdir / "redis").start()
    trees = {"now": ROOT}
    try:
        if args.baseline:
            base = workdir / "baseline"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "worktree",
                    "add",
                    "-q",
                    "--detach",
                    str(base),
                    args.baseline,
                ],
                check=True,
            )
            trees = {args.baseline: base, **trees}
        server.client().set("bench:floor", "x" * 64)
        results = {
            name: measure(tree, server.url, args.requests, workdir) for name, tree in trees.items()
        }
    finally:
        server.stop()
        if args.baseline:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(workdir / "baseline")]
            )
    print(
        f"instructions per request (callgrind, {args.requests} calls each);"
        " x floor of the same tree"
    )
    print(f"{'endpoint':<10}" + "".join(f"{name:>26}" for name in results))
    for endpoint in ENDPOINTS:
        cells = ""
        for row in results.values():
            value = row.get(endpoint, float("nan"))
            cells += f"{value:>18,.0f} {value / row['floor']:>5.2f}x"
        print(f"{endpoint:<10}{cells}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_instructions.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
