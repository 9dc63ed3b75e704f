"""Reload under load: two real gunicorn workers over a real Redis swap their knowledge base.

Load threads send messages the whole time, each on a fresh connection so both workers
get some; meanwhile the test replaces the folder's files and runs ``flask kb reload``
(a separate process, the same environment). Every request must succeed, both workers
must report the new version, and the new page must be what answers cite afterwards.
A second test drives the same reload through ``POST /api/admin/kb/reload?wait`` (served by
one worker, waiting on both) and reads each worker's ``chatbot_knowledge_version``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import REPO_ROOT, GunicornServer

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.slow]

OLD = "# Ferries\n\n## Timetable\n\nThe ferry to the island leaves at seven.\n"
NEW = "# Volcano\n\n## Eruptions\n\nThe volcano on the island erupts every spring.\n"
QUESTIONS = ("When does the ferry leave?", "When does the volcano erupt?")
LOAD_THREADS = 3
MAX_LOAD_SECONDS = 60  # the load stops by itself even if the test body fails to stop it
ADMIN_TOKEN = "reload-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def flask(server: GunicornServer, *args: str) -> subprocess.CompletedProcess:
    """``flask --app wsgi:app <args>`` with the server's environment (the operator's view)."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", *args],
        cwd=REPO_ROOT, env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def reload_and_wait(server: GunicornServer) -> tuple[float, float, str]:
    """Run ``flask kb reload --wait``: when it printed the request, when it exited, its output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "kb", "reload", "--wait", "20"],
        cwd=REPO_ROOT, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines, requested = [], None
    for line in process.stdout:
        lines.append(line)
        if requested is None and "requested" in line:
            requested = time.monotonic()
    returncode = process.wait(timeout=30)
    confirmed = time.monotonic()
    output = "".join(lines)
    assert returncode == 0 and requested is not None, output
    return requested, confirmed, output


def worker_rows(stats_output: str) -> dict[str, list[str]]:
    """``flask kb stats``'s worker table: worker id -> the row's other cells."""
    rows = [line.split() for line in stats_output.splitlines() if line.startswith("  ")]
    return {row[0]: row[1:] for row in rows if row[0] not in ("WORKER", "-")}  # "-": a skip


def cited(server: GunicornServer, question: str) -> list[str]:
    reply = requests.post(
        f"{server.base_url}/api/send-message", json={"question": question}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    return [source["source"] for source in reply.json()["sources"]]


def two_workers(redis_server, tmp_path, **env: str) -> tuple[GunicornServer, Path]:
    """Two gunicorn workers over our own (flushed) Redis, serving a folder with OLD in it."""
    redis_server.client().flushdb()  # our own server, started by the fixture
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ferries.md").write_text(OLD)
    env = {
        "REDIS_URL": redis_server.url,
        "KNOWLEDGE_DIR": str(kb),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        **env,
    }
    return GunicornServer(env, tmp_path / "gunicorn").start(), kb


class Load:
    """Threads posting questions until stopped (or MAX_LOAD_SECONDS), recording failures."""

    def __init__(self, server: GunicornServer) -> None:
        self.url = f"{server.base_url}/api/send-message"
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(LOAD_THREADS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        n = index
        while not self.stop.is_set() and time.monotonic() < deadline:
            n += 1
            try:  # no keep-alive: each request is accepted by whichever worker is free
                reply = requests.post(
                    self.url, json={"question": QUESTIONS[n % 2]}, timeout=10,
                    headers={"Connection": "close"},
                )  # fmt: skip
                good = reply.status_code == 200 and "reply" in reply.json()
                outcome = None if good else f"{reply.status_code} {reply.text[:200]}"
            except (requests.RequestException, ValueError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failures.append(outcome)


def test_reload_under_load_swaps_every_worker_without_a_failed_request(
    private_redis_server, tmp_path
):
    server, kb = two_workers(private_redis_server, tmp_path)
    try:
        workers = {f"{socket.gethostname()}:{pid}" for pid in server.worker_pids()}
        assert len(workers) == 2
        deadline = time.monotonic() + 15
        while set(worker_rows(flask(server, "kb", "stats").stdout)) != workers:
            assert time.monotonic() < deadline, "both workers should report within seconds"
            time.sleep(0.5)
        assert cited(server, QUESTIONS[0]) == ["ferries.md"]

        with Load(server) as load:
            time.sleep(1)
            (kb / "volcano.md").write_text(NEW)
            (kb / "ferries.md").unlink()
            requested, confirmed, output = reload_and_wait(server)
            time.sleep(1)  # keep the load on after the swap, too

        assert "Knowledge base version 1 requested." in output
        assert "All 2 live workers serve version 1." in output
        swap_seconds = confirmed - requested  # from the INCR to both workers' reports
        assert swap_seconds < 5, f"the swap took {swap_seconds:.1f}s"
        assert load.failures == [], load.failures[:5]
        assert load.ok >= 20, f"only {load.ok} requests ran during the reload"

        stats = flask(server, "kb", "stats")
        assert stats.returncode == 0, stats.stderr
        rows = worker_rows(stats.stdout)
        assert set(rows) == workers and all(row[0] == "1" for row in rows.values()), stats.stdout
        for _ in range(10):  # fresh connections: both workers answer some of them
            assert cited(server, QUESTIONS[1]) == ["volcano.md"]
            assert "ferries.md" not in cited(server, QUESTIONS[0])
        print(
            f"reload: {load.ok} requests ok during the run, swap confirmed in {swap_seconds:.2f}s"
        )
    finally:
        server.stop()


def reporting(server: GunicornServer) -> set[str]:
    """The workers ``GET /api/admin/kb`` lists."""
    state = requests.get(f"{server.base_url}/api/admin/kb", headers=ADMIN, timeout=10)
    return {worker["worker"] for worker in state.json()["workers"]}


def served_versions(server: GunicornServer) -> dict[int, float]:
    """``chatbot_knowledge_version`` of every live worker, by pid, from one scrape."""
    text = requests.get(f"{server.base_url}/metrics", timeout=10).text
    return {
        int(sample.labels["pid"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chatbot_knowledge_version"
    }


def test_the_admin_endpoint_reloads_every_worker_and_the_gauge_follows(
    private_redis_server, tmp_path
):
    server, kb = two_workers(private_redis_server, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        pids = server.worker_pids()
        workers = {f"{socket.gethostname()}:{pid}" for pid in pids}
        deadline = time.monotonic() + 15
        while reporting(server) != workers:
            assert time.monotonic() < deadline, "both workers should report within seconds"
            time.sleep(0.5)
        assert served_versions(server) == dict.fromkeys(pids, 0)

        (kb / "volcano.md").write_text(NEW)
        (kb / "ferries.md").unlink()
        started = time.monotonic()
        reply = requests.post(
            f"{server.base_url}/api/admin/kb/reload?wait=20", headers=ADMIN, timeout=30
        )
        assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < 5
        body = reply.json()
        assert body["version"] == 1
        assert {w["worker"]: w["version"] for w in body["workers"]} == dict.fromkeys(workers, 1)

        assert served_versions(server) == dict.fromkeys(pids, 1)  # whichever worker scrapes
        for _ in range(10):  # fresh connections: both workers answer some of them
            assert cited(server, QUESTIONS[1]) == ["volcano.md"]
    finally:
        server.stop()
