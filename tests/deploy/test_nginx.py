"""deploy/nginx.conf: valid for `nginx -t`, and a real nginx -> gunicorn -> Redis round trip."""

from __future__ import annotations

import http.client
import json
import re
import subprocess

import pytest
import requests

from chatbot_sessions.sessions.keys import session_keys
from tests.conftest import require
from tests.support.processes import NginxServer, wait_until

# What gunicorn received, per request: the headers nginx is meant to pass or set.


def test_nginx_accepts_the_shipped_config(tmp_path):
    require(NginxServer.binary is not None, "nginx is not installed (apt: nginx-light)")
    result = NginxServer(tmp_path, upstream="127.0.0.1:9").test_config()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


@pytest.mark.redis
@pytest.mark.gunicorn
def test_nginx_to_gunicorn_to_redis(tmp_path, gunicorn_server, real_redis):
    require(NginxServer.binary is not None, "nginx is not installed (apt: nginx-light)")
    # Two hops trusted (nginx, and the test's claimed upstream proxy), so the app's request
    # log shows the X-Forwarded-For entry nginx received, proving nginx appended to it.
    app = gunicorn_server(TRUSTED_PROXIES="2")
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
        assert sent.headers["X-Request-ID"] == "e2e-req-1"  # the caller's id, end to end

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

        # without a caller's id, nginx mints one ($request_id: 32 hex digits)
        minted = requests.get(f"{base}/api/session/{sid}/history", timeout=10)
        assert re.fullmatch(r"[0-9a-f]{32}", minted.headers["X-Request-ID"])

        def logged():
            lines = [json.loads(line) for line in app.log_path.read_text().splitlines()]
            return [e for e in lines if e.get("path") == "/api/send-message" and e["status"] == 200]

        [line] = wait_until(logged, 10, what="the app's request log line")
        assert line["request_id"] == "e2e-req-1"
        assert line["client_ip"] == "203.0.113.9"  # nginx appended; ProxyFix took 2 hops back
    finally:
        nginx.stop()
    assert "[emerg]" not in nginx.error_log.read_text()


PRIVATE_NETWORKS = ["127.0.0.1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def _location_blocks(config: str) -> dict[str, list[str]]:
    """``location`` argument -> its directives, from ``nginx -T`` output (no nested blocks)."""
    blocks = re.findall(r"^\s*location\s+([^{]+?)\s*\{(.*?)\}", config, re.M | re.S)
    return {
        where: [line.strip() for line in body.split(";") if line.strip()] for where, body in blocks
    }


def test_internal_endpoints_are_restricted_to_private_networks(tmp_path):
    require(NginxServer.binary is not None, "nginx is not installed (apt: nginx-light)")
    nginx = NginxServer(tmp_path, upstream="127.0.0.1:9")
    nginx.write_config()
    dumped = subprocess.run(
        [*nginx.command(), "-T"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    locations = _location_blocks(dumped)
    expected = [*(f"allow {net}" for net in PRIVATE_NETWORKS), "deny all"]
    for where in ("= /metrics", "/api/admin/"):
        directives = locations[where]
        access = [d for d in directives if d.startswith(("allow", "deny"))]
        assert access == expected, where  # deny all last: nginx checks rules in order
        assert "proxy_pass http://chatbot_sessions" in directives
    # the proxy headers live at server level, so no location may set its own (that would
    # silently drop every inherited proxy_set_header there)
    assert not any(d.startswith("proxy_set_header") for ds in locations.values() for d in ds)


def _get(base_port: int, path: str, source: str, headers: dict | None = None, method="GET"):
    """One request to nginx on loopback from the given source address (any of 127/8)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", base_port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.redis
@pytest.mark.gunicorn
def test_nginx_refuses_metrics_and_admin_to_other_addresses(tmp_path, gunicorn_server):
    require(NginxServer.binary is not None, "nginx is not installed (apt: nginx-light)")
    app = gunicorn_server(TRUSTED_PROXIES="1", ADMIN_TOKEN="t0ken")
    nginx = NginxServer(tmp_path / "nginx", upstream=f"127.0.0.1:{app.port}").start()
    try:
        # 127.0.0.1 is allowed: the scrape reaches the app, with the proxy headers applied
        status, headers, body = _get(nginx.port, "/metrics", "127.0.0.1", {"X-Request-ID": "m-1"})
        assert status == 200 and b"# TYPE" in body
        assert headers["X-Request-ID"] == "m-1"
        auth = {"Authorization": "Bearer t0ken"}
        status, _, body = _get(nginx.port, "/api/admin/stats", "127.0.0.1", auth)
        assert status == 200 and "activeSessions" in json.loads(body)

        # Any other loopback address is neither 127.0.0.1 nor a private network: refused by
        # nginx in the API's envelope, whatever the spelling of the path or a forged XFF.
        outsider = "127.0.0.2"
        for path, extra in [
            ("/metrics", {}),
            ("/metrics?name[]=x", {}),
            ("/%6Detrics", {}),
            ("//metrics", {}),
            ("/metrics", {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "10.0.0.1"}),
            ("/api/admin/stats", auth),
            ("/api//admin/stats", auth),
            ("/api/admin/%73tats", auth),
        ]:
            status, headers, body = _get(nginx.port, path, outsider, extra)
            assert status == 403, path
            assert headers["Content-Type"] == "application/json"
            assert json.loads(body)["error"] == "forbidden"
        # a trailing slash is another route, not the metrics: the app's own 404
        status, _, body = _get(nginx.port, "/metrics/", outsider)
        assert status == 404 and b"# TYPE" not in body

        # the public API and the probes stay open to everyone
        status, _, _ = _get(nginx.port, "/api/session/create", outsider, method="POST")
        assert status == 201
        assert _get(nginx.port, "/readyz", outsider)[0] == 200
        assert _get(nginx.port, "/healthz", outsider)[0] == 200
    finally:
        nginx.stop()
    assert "[emerg]" not in nginx.error_log.read_text()
