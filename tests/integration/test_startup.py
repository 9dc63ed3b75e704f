"""Start-up as operators see it: gunicorn with the embedded store, and a bad setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from tests.support.processes import REPO_ROOT, GunicornServer, free_port, wait_until

pytestmark = pytest.mark.gunicorn


def test_embedded_store_serves_without_redis(tmp_path):
    server = GunicornServer({}, tmp_path).start()  # no REDIS_* at all
    try:
        base = server.base_url
        sid = requests.post(f"{base}/api/session/create", timeout=5).json()["sessionId"]
        reply = requests.post(
            f"{base}/api/send-message",
            json={"question": "hi"},
            headers={"session-id": sid},
            timeout=10,
        ).json()
        assert reply["sessionId"] == sid
        history = requests.get(f"{base}/api/session/{sid}/history", timeout=5).json()
        assert [m["type"] for m in history["messages"]] == ["user", "assistant"]
        log = server.log_path.read_text()
        assert "embedded in-process store" in log
        assert "Booting worker" in log and log.count("Booting worker") == 1  # one worker only
    finally:
        server.stop()


def gunicorn_exits(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run gunicorn with this repo's config and no Redis settings; expect it to stop by itself."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SESSION_"))}
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "wsgi:app"],
        cwd=REPO_ROOT,
        env={**base, "HOST": "127.0.0.1", "PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_setting_stops_gunicorn_with_the_variable_named():
    result = gunicorn_exits(SESSION_TTL="abc", PORT="1")
    assert result.returncode != 0
    assert "SESSION_TTL" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args, env",
    [(("-w", "4"), {}), ((), {"GUNICORN_CMD_ARGS": "--workers 2"})],
    ids=["-w 4", "GUNICORN_CMD_ARGS"],
)
def test_embedded_store_refuses_to_start_in_several_workers(args, env):
    result = gunicorn_exits(*args, **env)
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "refusing to start" in output and "embedded in-process store" in output
    assert "-w/--workers" in output and "WEB_CONCURRENCY" in output and "REDIS_URL" in output
    assert "Booting worker" not in output


def test_embedded_store_starts_with_one_worker_asked_and_refuses_a_second(tmp_path):
    server = GunicornServer({}, tmp_path, args=("-w", "1")).start()
    try:
        assert requests.post(f"{server.base_url}/api/session/create", timeout=5).status_code == 201
        first = server.worker_pids()
        assert len(first) == 1
        os.kill(server.process.pid, signal.SIGTTIN)  # "one more worker", at run time
        wait_until(lambda: "keeping 1 worker(s)" in server.log_path.read_text(), 10, what="log")
        assert server.worker_pids() == first
    finally:
        server.stop()
