"""/metrics on one process: what is counted, with which labels (bounded cardinality)."""

from __future__ import annotations

import re

from chatbot_sessions.domain import Reply
from chatbot_sessions.sessions.ids import new_session_id
from tests.support.metrics import samples, value


def test_requests_are_counted_by_route_template_and_status(client):
    sids = [client.post("/api/session/create").get_json()["sessionId"] for _ in range(3)]
    for sid in sids:
        assert client.get(f"/api/session/{sid}/history").status_code == 200
    assert client.get(f"/api/session/{new_session_id()}/history").status_code == 404
    assert client.get("/no/such/path").status_code == 404

    data = samples(client)
    history = {"method": "GET", "endpoint": "/api/session/<session_id>/history"}
    assert value(data, "chatbot_http_requests_total", **history, status="200") == 3
    assert value(data, "chatbot_http_requests_total", **history, status="404") == 1
    assert value(data, "chatbot_http_request_duration_seconds_count", **history, status="200") == 3
    assert (
        value(
            data, "chatbot_http_requests_total", method="GET", endpoint="<unmatched>", status="404"
        )
        == 1
    )
    text = client.get("/metrics").get_data(as_text=True)
    assert not any(sid in text for sid in sids), "a session id leaked into a label"


def test_sessions_messages_and_reply_latency(client):
    client.post("/api/session/create")
    first = client.post("/api/send-message", json={"question": "hi"}).get_json()["sessionId"]
    client.post("/api/send-message", json={"question": "again"}, headers={"session-id": first})

    data = samples(client)
    assert value(data, "chatbot_sessions_created_total") == 2  # one empty, one by a message
    assert value(data, "chatbot_messages_stored_total") == 4  # two turns of two messages
    assert value(data, "chatbot_reply_generation_seconds_count", outcome="ok") == 2
    assert value(data, "chatbot_reply_generation_seconds_sum", outcome="ok") > 0


def test_degraded_replies_get_their_own_outcome(make_app, generator, monkeypatch):
    monkeypatch.setattr(generator, "generate", lambda q, h: Reply("sorry", degraded=True))
    client = make_app().test_client()
    client.post("/api/send-message", json={"question": "hi"})
    data = samples(client)
    assert value(data, "chatbot_reply_generation_seconds_count", outcome="degraded") == 1
    assert value(data, "chatbot_reply_generation_seconds_count", outcome="ok") == 0


def test_redis_errors_are_counted_and_answered_503(make_app, redis_down):
    client = make_app().test_client()
    for _ in range(2):
        assert client.post("/api/session/create").status_code == 503
    data = samples(client)
    assert value(data, "chatbot_redis_errors_total", error="ConnectionError") == 2
    create = {"method": "POST", "endpoint": "/api/session/create"}
    assert value(data, "chatbot_http_requests_total", **create, status="503") == 2
    assert value(data, "chatbot_sessions_created_total") == 0


def test_each_app_has_its_own_registry(make_app):
    a, b = make_app().test_client(), make_app().test_client()
    a.post("/api/session/create")
    assert value(samples(a), "chatbot_sessions_created_total") == 1
    assert value(samples(b), "chatbot_sessions_created_total") == 0


def test_metric_names_use_one_namespace(client):
    text = client.get("/metrics").get_data(as_text=True)
    names = set(re.findall(r"^# TYPE (\S+)", text, re.MULTILINE))
    assert names and all(name.startswith("chatbot_") for name in names)


def test_unknown_methods_share_one_label_value(client):
    for method in ("FOO", "BAR", "PROPFIND", "get-ish"):
        client.open("/api/session/create", method=method)
    client.open("/no/such/path", method="BREW")
    client.open("/api/session/create", method="OPTIONS")
    data = samples(client)
    methods = {
        dict(labels)["method"] for name, labels in data if name == "chatbot_http_requests_total"
    }
    assert methods == {"OTHER", "OPTIONS"}
    other = {"method": "OTHER", "endpoint": "<unmatched>"}
    assert value(data, "chatbot_http_requests_total", **other, status="405") == 4
    assert value(data, "chatbot_http_requests_total", **other, status="404") == 1


def test_ratings_are_counted_by_rating_and_by_a_degraded_answer(make_app, generator, monkeypatch):
    client = make_app().test_client()
    assert value(samples(client), "chatbot_feedback_total", rating="up", degraded="false") == 0
    sid = client.post("/api/send-message", json={"question": "ok"}).get_json()["sessionId"]
    monkeypatch.setattr(generator, "generate", lambda q, h: Reply("sorry", degraded=True))
    client.post("/api/send-message", json={"question": "fails"}, headers={"session-id": sid})

    def rate(message_id: int, rating: str) -> int:
        path = f"/api/session/{sid}/messages/{message_id}/feedback"
        return client.post(path, json={"rating": rating}).status_code

    assert [rate(1, "up"), rate(1, "down"), rate(3, "down")] == [200, 200, 200]
    assert [rate(0, "up"), rate(9, "up"), rate(-1, "up")] == [422, 404, 404]  # not counted
    data = samples(client)
    counted = {
        (rating, degraded): value(data, "chatbot_feedback_total", rating=rating, degraded=degraded)
        for rating in ("up", "down")
        for degraded in ("false", "true")
    }
    assert counted == {
        ("up", "false"): 1, ("down", "false"): 1, ("up", "true"): 0, ("down", "true"): 1,
    }  # fmt: skip
