"""Hostile framing and bodies, sent to the real service under gunicorn: every answer is the
JSON error envelope with a 4xx status, never a 500, an HTML page or a hang, and nothing
stored changes."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn]


def assert_envelope(status: int, content_type: str, body: dict, expected: int, error: str):
    assert (status, body.get("error")) == (expected, error), body
    assert content_type.split(";")[0] == "application/json"
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)


def stored(real_redis) -> dict[str, object]:
    """Every key of our own Redis with its value, to prove a request changed nothing."""
    dump = {}
    for key in real_redis.keys("*"):
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
