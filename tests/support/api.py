"""Requests to the service through Flask's test client, as the API tests make them."""

from __future__ import annotations

from flask.testing import FlaskClient
from werkzeug.test import TestResponse


def send(
    client: FlaskClient,
    question: str = "q",
    sid: str | None = None,
    key: str | None = None,
    *,
    ip: str | None = None,
    headers: dict[str, str] | None = None,
) -> TestResponse:
    """POST /api/send-message, with a ``session-id``, an ``Idempotency-Key`` and a client
    address when given."""
    sent = dict(headers or {})
    if sid is not None:
        sent["session-id"] = sid
    if key is not None:
        sent["Idempotency-Key"] = key
    extra = {"environ_base": {"REMOTE_ADDR": ip}} if ip is not None else {}
    return client.post("/api/send-message", json={"question": question}, headers=sent, **extra)


def history(client: FlaskClient, sid: str) -> list[str]:
    """The contents of a session's messages, oldest first."""
    return [m["content"] for m in client.get(f"/api/session/{sid}/history").get_json()["messages"]]
