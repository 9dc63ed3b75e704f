"""Hostile framing and bodies, sent to the real service under gunicorn: every answer is the
JSON error envelope with a 4xx status, never a 500, an HTML page or a hang, and nothing
stored changes."""

from __future__ import annotations

import pytest
import requests

from chatbot_sessions.sessions.keys import KNOWLEDGE_WORKERS_KEY
from tests.support.raw_http import exchange

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn]


def assert_envelope(status: int, content_type: str, body: dict, expected: int, error: str):
    assert (status, body.get("error")) == (expected, error), body
    assert content_type.split(";")[0] == "application/json"
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)


def data_keys(real_redis) -> list[str]:
    """Every key of our own Redis but the serving workers' heartbeat (they write it on
    their own clock, whatever requests come)."""
    return [key for key in real_redis.keys("*") if key != KNOWLEDGE_WORKERS_KEY]


def stored(real_redis) -> dict[str, object]:
    """Every key of our own Redis with its value, to prove a request changed nothing."""
    dump = {}
    for key in data_keys(real_redis):
        kind = real_redis.type(key)
        if kind == "string":
            dump[key] = real_redis.get(key)
        elif kind == "list":
            dump[key] = real_redis.lrange(key, 0, -1)
        elif kind == "hash":
            dump[key] = real_redis.hgetall(key)
        else:
            dump[key] = kind
    return dump


HOSTILE_JSON = {
    "5000 open arrays": b"[" * 5000,
    "5000 closed arrays": b"[" * 5000 + b"]" * 5000,
    "5000 arrays as the question": b'{"question": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "1000 unterminated arrays": b"[" * 1000,
    "5000 unterminated objects": b'{"a":' * 5000,
    "a 5000-digit integer": b'{"question": ' + b"1" * 5000 + b"}",
    "a 5000-digit negative integer": b'{"question": -' + b"9" * 5000 + b"}",
}


def test_bodies_the_json_decoder_refuses_are_400_invalid_json(gunicorn_server, real_redis):
    server = gunicorn_server()
    base = server.base_url
    sid = requests.post(f"{base}/api/session/create", timeout=5).json()["sessionId"]
    requests.post(
        f"{base}/api/send-message", json={"question": "hi"}, headers={"session-id": sid}, timeout=10
    )
    before = stored(real_redis)

    for name, body in HOSTILE_JSON.items():
        for headers in ({}, {"session-id": sid}):
            response = requests.post(
                f"{base}/api/send-message",
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=10,
            )
            assert response.status_code == 400, (name, response.text[:200])
            assert_envelope(
                response.status_code,
                response.headers["Content-Type"],
                response.json(),
                400,
                "invalid_json",
            )

    assert stored(real_redis) == before
    assert "Traceback" not in server.log_path.read_text()


def request(line: str, *headers: str, body: bytes = b"") -> bytes:
    return ("\r\n".join([line, "Host: 127.0.0.1", *headers, "", ""])).encode() + body


# What gunicorn refuses before the app sees a request: (status, error) it must answer with.
REFUSED_BY_GUNICORN = {
    "a 9,000-byte header": (request("GET /healthz HTTP/1.1", "X-Big: " + "a" * 9000), 431),
    "150 headers": (request("GET /healthz HTTP/1.1", *(f"X-H{i}: v" for i in range(150))), 431),
    "a 5,000-byte URL": (request(f"GET /api/{'a' * 5000} HTTP/1.1"), 414),
    "Content-Length: abc": (request("POST /api/send-message HTTP/1.1", "Content-Length: abc"), 400),
    "two Content-Lengths": (
        request("POST /api/send-message HTTP/1.1", "Content-Length: 2", "Content-Length: 3"),
        400,
    ),
    "a negative Content-Length": (
        request("POST /api/send-message HTTP/1.1", "Content-Length: -1"),
        400,
    ),
    "Content-Length and chunked": (
        request(
            "POST /api/send-message HTTP/1.1",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            body=b"0\r\n\r\n",
        ),
        400,
    ),
    "a method with @": (request("G@T /healthz HTTP/1.1"), 400),
    "HTTP/9.9": (request("GET /healthz HTTP/9.9"), 400),
    "a header without colon": (request("GET /healthz HTTP/1.1", "Broken"), 400),
    "a folded header": (request("GET /healthz HTTP/1.1", "X-A: a", " b"), 400),
    "a TLS hello on the plain port": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
    "Expect: 200-ok": (
        request("POST /api/send-message HTTP/1.1", "Expect: 200-ok", "Content-Length: 0"),
        417,
    ),
}
CODES = {
    400: "bad_request",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_too_large",
}


def test_what_gunicorn_refuses_itself_is_answered_in_json(gunicorn_server):
    server = gunicorn_server()
    answers = {name: exchange(server.port, raw) for name, (raw, _) in REFUSED_BY_GUNICORN.items()}

    assert {name: a.status for name, a in answers.items()} == {
        name: status for name, (_, status) in REFUSED_BY_GUNICORN.items()
    }
    for answer in answers.values():
        assert_envelope(
            answer.status, answer.headers["content-type"], answer.json(), answer.status,
            CODES[answer.status],
        )  # fmt: skip
        assert answer.headers["connection"] == "close" and answer.ending == "eof"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert b"<html" not in answer.body
    # The service still answers afterwards: refusals cost a connection, not a worker.
    assert requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def chunked(*body: bytes) -> bytes:
    return request(
        "POST /api/send-message HTTP/1.1",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        body=b"".join(body),
    )


BROKEN_CHUNKING = {
    "a chunk size that is not hex": chunked(b"zz\r\n{}\r\n0\r\n\r\n"),
    "a chunk without its CRLF": chunked(b"2\r\n{}XX0\r\n\r\n"),
    "a control byte in a chunk extension": chunked(b"2;\x01\r\n{}\r\n0\r\n\r\n"),
    "a trailer without colon": chunked(b'11\r\n{"question": "q"}\r\n0\r\nBroken\r\n\r\n'),
}


def test_broken_chunked_framing_is_400_not_500(gunicorn_server, real_redis):
    server = gunicorn_server()
    answers = {name: exchange(server.port, raw) for name, raw in BROKEN_CHUNKING.items()}

    assert {name: a.status for name, a in answers.items()} == dict.fromkeys(BROKEN_CHUNKING, 400)
    for answer in answers.values():
        assert_envelope(
            answer.status, answer.headers["content-type"], answer.json(), 400, "bad_request"
        )
    assert data_keys(real_redis) == []
    assert "Traceback" not in server.log_path.read_text()


SID = "7c3e1bd4-8d2b-4f7e-9a51-2f0e6f6a1c11"
DOUBLED_SLASHES = [
    ("GET", "/api//session/create"),
    ("POST", "/api//session/create"),
    ("POST", "/api/session//create"),
    ("GET", f"/api//session/{SID}/history"),
    ("GET", f"/api/session/{SID}//validate"),
    ("DELETE", f"/api/session//{SID}"),
    ("POST", "/api//send-message"),
    ("GET", "/api//openapi.json"),
    ("POST", "/api/send-message/"),
    ("GET", f"/api/session/{SID}/history/"),
    ("GET", "/api/docs/"),
]


def test_doubled_and_trailing_slashes_are_json_404s_not_redirects(gunicorn_server, real_redis):
    server = gunicorn_server()
    for method, path in DOUBLED_SLASHES:
        response = requests.request(
            method, server.base_url + path, json={"question": "q"}, allow_redirects=False, timeout=5
        )
        assert (method, path, response.status_code) == (method, path, 404)
        assert_envelope(404, response.headers["Content-Type"], response.json(), 404, "not_found")
    assert data_keys(real_redis) == []
    # Leading slashes are gunicorn's to fold (PATH_INFO "/api/..."): served, not redirected.
    response = requests.post(f"{server.base_url}//api/session/create", timeout=5)
    assert response.status_code == 201 and response.json()["success"] is True
