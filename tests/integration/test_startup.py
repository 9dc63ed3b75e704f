"""Start-up as operators see it: gunicorn with the embedded store, and a bad setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.support.processes import REPO_ROOT, GunicornServer

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


def test_bad_setting_stops_gunicorn_with_the_variable_named():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SESSION_"))}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=REPO_ROOT,
        env={**env, "SESSION_TTL": "abc", "PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SESSION_TTL" in result.stderr + result.stdout
