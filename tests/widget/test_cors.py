"""CORS_ORIGINS: listed origins get a grant on /api/ (session-id allowed and readable,
Idempotency-Key allowed, Idempotent-Replayed readable), every other origin gets none, and
with nothing listed the API stays same-origin."""

from __future__ import annotations

import pytest

from chatbot_sessions.config import ConfigError, load_settings

ALLOWED = "https://shop.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,session-id",
}


@pytest.fixture
def cors_client(make_app):
    return make_app({"CORS_ORIGINS": f"{ALLOWED}, http://[::1]:8080"}).test_client()


def _cors_headers(response) -> list[str]:
    return [name for name, _ in response.headers.items() if name.lower().startswith("access-")]


def _names(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


def test_preflight_from_listed_origin_allows_session_id_header(cors_client):
    response = cors_client.options("/api/send-message", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"session-id", "content-type"} <= _names(
        response.headers["Access-Control-Allow-Headers"]
    )
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_listed_origin_can_read_session_id_and_retry_after(cors_client):
    response = cors_client.post(
        "/api/send-message", json={"question": "hi"}, headers={"Origin": ALLOWED}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"session-id", "retry-after"} <= _names(
        response.headers["Access-Control-Expose-Headers"]
    )
    assert "Origin" in response.headers["Vary"]


def test_preflight_allows_the_idempotency_key_the_widget_sends(cors_client):
    response = cors_client.options(
        "/api/send-message",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,idempotency-key,session-id",
        },
    )
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"content-type", "idempotency-key", "session-id"} <= _names(
        response.headers["Access-Control-Allow-Headers"]
    )


def test_a_replayed_reply_says_so_readably_cross_origin(cors_client):
    headers = {"Origin": ALLOWED, "Idempotency-Key": "cors-test-key-0123456789"}
    first = cors_client.post("/api/send-message", json={"question": "hi"}, headers=headers)
    retry = cors_client.post(
        "/api/send-message",
        json={"question": "hi"},
        headers={**headers, "session-id": first.headers["session-id"]},
    )
    assert (first.status_code, retry.status_code) == (200, 200)
    assert "Idempotent-Replayed" not in first.headers
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    assert retry.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"idempotent-replayed", "session-id", "retry-after"} <= _names(
        retry.headers["Access-Control-Expose-Headers"]
    )


def test_error_responses_carry_the_grant_too(cors_client):
    # The widget must be able to read a 4xx/5xx body to show a useful message.
    response = cors_client.delete(
        "/api/session/00000000-0000-4000-8000-000000000000", headers={"Origin": ALLOWED}
    )
    assert response.status_code == 404
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_ipv6_origin_is_matched_literally(cors_client):
    ok = cors_client.get(
        "/api/session/abc/validate", headers={"Origin": "http://[::1]:8080"}
    ).headers
    near_miss = cors_client.get(
        "/api/session/abc/validate", headers={"Origin": "http://:1]:8080"}
    ).headers
    assert ok["Access-Control-Allow-Origin"] == "http://[::1]:8080"
    assert "Access-Control-Allow-Origin" not in near_miss


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "http://shop.example.com",  # scheme differs
        "https://shop.example.com:444",  # port differs
        "https://shop.example.com.evil.net",  # prefix match must not count
        "null",
    ],
)
def test_unlisted_origin_gets_no_grant(cors_client, origin):
    preflight = cors_client.options("/api/send-message", headers={"Origin": origin, **PREFLIGHT})
    simple = cors_client.post(
        "/api/send-message", json={"question": "hi"}, headers={"Origin": origin}
    )
    for response in (preflight, simple):
        assert _cors_headers(response) == []


def test_no_origins_configured_means_no_cors_headers(client):
    preflight = client.options("/api/send-message", headers={"Origin": ALLOWED, **PREFLIGHT})
    simple = client.post("/api/session/create", headers={"Origin": ALLOWED})
    assert simple.status_code == 201
    for response in (preflight, simple):
        assert _cors_headers(response) == []


def test_requests_without_origin_get_no_cors_headers(cors_client):
    response = cors_client.post("/api/session/create")
    assert response.status_code == 201
    assert "Access-Control-Allow-Origin" not in response.headers


def test_widget_files_are_not_cors_api(cors_client):
    response = cors_client.get("/widget.js", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_wildcard_grants_any_origin(make_app):
    client = make_app({"CORS_ORIGINS": "*"}).test_client()
    response = client.post(
        "/api/session/create", headers={"Origin": "https://anywhere.example.org"}
    )
    assert response.headers["Access-Control-Allow-Origin"] in {
        "*",
        "https://anywhere.example.org",
    }


@pytest.mark.parametrize(
    "value",
    ["https://shop.example.com/", "shop.example.com", "https://a.com/path", "ftp://a.com",
     "http://a.com:port", "https://user@a.com", "https://*.example.com"],
)  # fmt: skip
def test_malformed_origin_stops_start_up_naming_the_variable(value):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        load_settings({"CORS_ORIGINS": value}, environ={})


def test_origin_list_is_parsed_from_one_variable():
    settings = load_settings(
        environ={"CORS_ORIGINS": "http://127.0.0.1:5173, https://shop.example.com,"}
    )
    assert settings.cors_origins == ("http://127.0.0.1:5173", "https://shop.example.com")
