"""X-Forwarded-For decides the client address only for as many hops as TRUSTED_PROXIES."""

from __future__ import annotations

import pytest
import requests
from flask import request


def app_showing_client_address(make_app, trusted_proxies: int):
    app = make_app({"TRUSTED_PROXIES": str(trusted_proxies)})
    app.add_url_rule("/_client", "client", lambda: f"{request.remote_addr} {request.scheme}")
    return app.test_client()


def seen(client, forwarded_for: str | None, proto: str | None = None) -> str:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    if proto:
        headers["X-Forwarded-Proto"] = proto
    return client.get(
        "/_client", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    ).get_data(as_text=True)


def test_without_trusted_proxies_the_header_is_ignored(make_app):
    client = app_showing_client_address(make_app, 0)
    assert seen(client, "203.0.113.9", "https") == "127.0.0.1 http"


def test_one_trusted_proxy_takes_the_address_it_appended(make_app):
    client = app_showing_client_address(make_app, 1)
    assert seen(client, "203.0.113.9", "https") == "203.0.113.9 https"
    # A client writing its own X-Forwarded-For only adds entries left of nginx's.
    assert seen(client, "6.6.6.6, 203.0.113.9") == "203.0.113.9 http"
    assert seen(client, None) == "127.0.0.1 http"


def test_two_trusted_proxies_take_the_second_from_the_right(make_app):
    client = app_showing_client_address(make_app, 2)
    assert seen(client, "6.6.6.6, 203.0.113.9, 10.0.0.5") == "203.0.113.9 http"


@pytest.mark.parametrize("trusted, limited", [(0, True), (1, False)])
def test_spoofed_header_cannot_dodge_the_ip_limit(make_app, trusted, limited):
    app = make_app(
        {"RATE_LIMIT_ENABLED": "1", "RATE_LIMIT_CREATE": "2/minute", "TRUSTED_PROXIES": trusted}
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/api/session/create", headers={"X-Forwarded-For": f"198.51.100.{n}"}
        ).status_code
        for n in range(4)
    ]
    # Untrusted: every request is the socket peer, however the header varies. Trusted
    # (behind nginx, which overwrites the header): each address is its own client.
    assert statuses == ([201, 201, 429, 429] if limited else [201] * 4)


@pytest.mark.redis
@pytest.mark.gunicorn
@pytest.mark.parametrize("trusted, hsts", [("0", False), ("1", True)])
def test_under_gunicorn_forwarded_proto_counts_only_with_trusted_proxies(
    gunicorn_server, trusted, hsts
):
    """gunicorn itself trusts no peer, loopback included: only TRUSTED_PROXIES decides."""
    server = gunicorn_server(TRUSTED_PROXIES=trusted)
    response = requests.get(
        f"{server.base_url}/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=5
    )
    assert response.status_code == 200
    assert ("Strict-Transport-Security" in response.headers) is hsts
    # Headers that disagree about the scheme are not gunicorn's to judge (it used to 400).
    response = requests.get(
        f"{server.base_url}/healthz",
        headers={"X-Forwarded-Proto": "http", "X-Forwarded-Ssl": "on"},
        timeout=5,
    )
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers
