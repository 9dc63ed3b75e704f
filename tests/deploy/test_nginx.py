"""deploy/nginx.conf: valid for `nginx -t`, and a real nginx -> gunicorn -> Redis round trip."""

from __future__ import annotations

import re

import pytest
import requests

from chatbot_sessions.store import session_keys
from tests.conftest import require
from tests.support.processes import NginxServer, wait_until

# What gunicorn received, per request: the headers nginx is meant to pass or set.
ACCESS_FORMAT = (
    "rid=%({x-request-id}i)s sid=%({session-id}i)s xff=%({x-forwarded-for}i)s "
    "proto=%({x-forwarded-proto}i)s path=%(U)s status=%(s)s"
)
LINE = re.compile(r"rid=(\S+) sid=(\S+) xff=(.+?) proto=(\S+) path=(\S+) status=(\d+)")


def test_nginx_accepts_the_shipped_config(tmp_path):
    require(NginxServer.binary is not None, "nginx is not installed (apt: nginx-light)")
    result = NginxServer(tmp_path, upstream="127.0.0.1:9").test_config()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


@pytest.mark.redis
@pytest.mark.gunicorn
def test_nginx_to_gunicorn_to_redis(tmp_path, gunicorn_server, real_redis):
    require(NginxServer.binary is not None, "nginx is not installed (apt: nginx-light)")
    access_log = tmp_path / "gunicorn-access.log"
    app = gunicorn_server(
        GUNICORN_CMD_ARGS=f"--access-logfile {access_log} --access-logformat '{ACCESS_FORMAT}'"
    )
    nginx = NginxServer(tmp_path / "nginx", upstream=f"127.0.0.1:{app.port}").start()
    try:
        base = nginx.base_url
        created = requests.post(f"{base}/api/session/create", timeout=10)
        assert created.status_code == 201
        sid = created.json()["sessionId"]

        sent = requests.post(
            f"{base}/api/send-message",
            json={"question": "through the proxy"},
            headers={"session-id": sid, "X-Request-ID": "e2e-req-1",
                     "X-Forwarded-For": "203.0.113.9"},
            timeout=10,
        )  # fmt: skip
        assert sent.status_code == 200
        assert sent.headers["session-id"] == sid  # the response header survives the proxy
        assert sent.json()["sessionId"] == sid  # the request header reached the app
        if "X-Request-ID" in sent.headers:  # once the app echoes it, it must be the caller's
            assert sent.headers["X-Request-ID"] == "e2e-req-1"

        history = requests.get(f"{base}/api/session/{sid}/history", timeout=10).json()
        assert [m["type"] for m in history["messages"]] == ["user", "assistant"]
        assert history["messages"][0]["content"] == "through the proxy"
        assert real_redis.llen(session_keys(sid)[1]) == 2  # it is in Redis

        # An oversized body is the app's JSON 413 (nginx's own limit is set above it).
        big = requests.post(
            f"{base}/api/send-message", data=b"x" * 100_000,
            headers={"Content-Type": "application/json"}, timeout=10,
        )  # fmt: skip
        assert big.status_code == 413 and big.json()["error"] == "payload_too_large"

        def logged():
            lines = [LINE.search(line) for line in access_log.read_text().splitlines()]
            return [m.groups() for m in lines if m and m[5] != "/api/session/00000000/validate"]

        seen = wait_until(lambda: len(logged()) >= 4 and logged(), 10, what="access log lines")
        by_status = {(path, int(status)): rest for *rest, path, status in seen}
        rid, got_sid, xff, proto = by_status["/api/send-message", 200]
        assert (rid, got_sid, proto) == ("e2e-req-1", sid, "http")
        assert xff == "203.0.113.9, 127.0.0.1"  # appended, not replaced
        # without a caller's id, nginx mints one ($request_id: 32 hex digits)
        minted = by_status[f"/api/session/{sid}/history", 200][0]
        assert re.fullmatch(r"[0-9a-f]{32}", minted)
    finally:
        nginx.stop()
    assert "[emerg]" not in nginx.error_log.read_text()
