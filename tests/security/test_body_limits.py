"""Size limits on what a client can make the service read or keep, all with JSON errors."""

from __future__ import annotations

import http.client
import io
import json
import uuid

import pytest
import requests

from tests.support.raw_http import exchange


def chunked_post(base_url: str, path: str, chunks: list[bytes], headers: dict | None = None):
    """POST with Transfer-Encoding: chunked and no Content-Length, as a streaming client."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=iter(chunks),
            headers={"Content-Type": "application/json", **(headers or {})},
            encode_chunked=True,
        )
        response = connection.getresponse()
        sent_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, sent_headers, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.redis
@pytest.mark.gunicorn
def test_chunked_bodies_are_held_to_max_content_length(gunicorn_server, real_redis):
    server = gunicorn_server(MAX_CONTENT_LENGTH="2048", MAX_QUESTION_CHARS="100000")
    keys_before = set(real_redis.keys("chat_session:*"))

    small = [b'{"question": ', b'"' + b"x" * 500 + b'"}']
    status, headers, body = chunked_post(server.base_url, "/api/send-message", small)
    assert status == 200 and body["success"] is True

    big = [b'{"question": "'] + [b"x" * 1000] * 10 + [b'"}']
    status, headers, body = chunked_post(server.base_url, "/api/send-message", big)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert body["success"] is False and body["error"] == "payload_too_large"
    new_keys = set(real_redis.keys("chat_session:*")) - keys_before
    assert len(new_keys) == 3  # the one small exchange (meta, messages, write log), not the big one


@pytest.mark.redis
@pytest.mark.gunicorn
def test_declared_oversize_body_is_refused_as_json(gunicorn_server):
    server = gunicorn_server(MAX_CONTENT_LENGTH="2048")
    response = requests.post(
        f"{server.base_url}/api/send-message", json={"question": "x" * 4000}, timeout=10
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.redis
@pytest.mark.gunicorn
def test_a_2_mb_body_always_gets_its_413_not_a_reset(gunicorn_server, real_redis):
    """The server reads off the refused body before it closes, so the answer arrives."""
    server = gunicorn_server()  # MAX_CONTENT_LENGTH: the default 64 KiB
    body = b'{"question": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    for _ in range(10):
        response = requests.post(
            f"{server.base_url}/api/send-message",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=15,
        )
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert response.headers["Connection"] == "close"

    # An upload at network pace, not loopback's: the server must not close while it goes on.
    head = (
        "POST /api/send-message HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(10):
        answer = exchange(server.port, head + body, timeout=15, pause=0.001)
        assert (answer.status, answer.json()["error"]) == (413, "payload_too_large")
        assert answer.headers["content-type"] == "application/json"
        assert answer.ending == "eof"  # a clean close after the answer, not a reset
    assert real_redis.keys("chat_session:*") == []


def streamed(client, body: bytes):
    """A chunked request as a WSGI server that de-chunks delivers it: no Content-Length."""
    return client.post(
        "/api/send-message",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def json_body_of_size(size: int) -> bytes:
    body = b'{"question": "q"}'
    return body + b" " * (size - len(body))  # trailing whitespace: still valid JSON


def test_streamed_body_at_the_limit_passes_and_one_byte_more_is_413(make_app):
    client = make_app({"MAX_CONTENT_LENGTH": "2048"}).test_client()
    assert streamed(client, json_body_of_size(2048)).status_code == 200
    over = streamed(client, json_body_of_size(2049))
    assert over.status_code == 413  # not a 400 about a truncated body, nor a 200 on a prefix
    assert over.get_json()["error"] == "payload_too_large"


def test_question_length_is_checked_in_characters_not_bytes(make_app):
    client = make_app({"MAX_QUESTION_CHARS": "5"}).test_client()
    assert client.post("/api/send-message", json={"question": "\u2603" * 5}).status_code == 200
    response = client.post("/api/send-message", json={"question": "\u2603" * 6})
    assert response.status_code == 422
    assert response.get_json()["error"] == "validation_error"
    assert "question" in response.get_json()["details"]["fields"]


def test_history_pages_are_capped_at_history_page_max(make_app):
    client = make_app({"HISTORY_PAGE_MAX": "4", "MAX_MESSAGES_PER_SESSION": "6"}).test_client()
    sid = None
    for n in range(5):
        headers = {"session-id": sid} if sid else {}
        sid = client.post(
            "/api/send-message", json={"question": f"q{n}"}, headers=headers
        ).get_json()["sessionId"]
    page = client.get(f"/api/session/{sid}/history?limit=1000").get_json()
    assert [m["content"] for m in page["messages"]] == [
        "q3",
        "answer to: q3",
        "q4",
        "answer to: q4",
    ]
    older = client.get(f"/api/session/{sid}/history?before={page['nextCursor']}").get_json()
    # Only MAX_MESSAGES_PER_SESSION (6) are kept: one more page of 2, then nothing.
    assert [m["content"] for m in older["messages"]] == ["q2", "answer to: q2"]
    assert older["nextCursor"] is None
    assert uuid.UUID(sid).version == 4
