"""Create, history, validate and delete: the session contract existing clients speak."""

from __future__ import annotations

import uuid

import pytest

from chatbot_sessions.sessions.keys import session_keys
from tests.support.commands import record_commands


def create(client) -> str:
    response = client.post("/api/session/create")
    assert response.status_code == 201
    return response.get_json()["sessionId"]


def test_create_returns_a_uuid4_and_stores_the_session(client, fake_redis):
    response = client.post("/api/session/create")
    body = response.get_json()
    assert response.status_code == 201
    assert body["success"] is True and body["message"] == "Session created successfully"
    assert uuid.UUID(body["sessionId"]).version == 4
    assert fake_redis.exists(session_keys(body["sessionId"])[0]) == 1


def test_history_of_new_session(client):
    sid = create(client)
    body = client.get(f"/api/session/{sid}/history").get_json()
    assert body["success"] is True and body["sessionId"] == sid and body["messages"] == []
    assert body["createdAt"].endswith("Z") and body["lastActivity"] >= body["createdAt"]


def test_history_returns_turns_oldest_first(client):
    sid = create(client)
    for q in ("one", "two"):
        client.post("/api/send-message", json={"question": q}, headers={"session-id": sid})
    messages = client.get(f"/api/session/{sid}/history").get_json()["messages"]
    assert [(m["type"], m["content"]) for m in messages] == [
        ("user", "one"), ("assistant", "answer to: one"),
        ("user", "two"), ("assistant", "answer to: two"),
    ]  # fmt: skip
    assert messages[1]["sources"] == [{"title": "Guide", "source": "guide.md", "score": 1.5}]
    assert messages[0]["timestamp"] <= messages[1]["timestamp"] <= messages[2]["timestamp"]


def test_history_paging_through_the_api(client):
    sid = create(client)
    for q in range(5):
        client.post("/api/send-message", json={"question": f"q{q}"}, headers={"session-id": sid})
    page = client.get(f"/api/session/{sid}/history?limit=3").get_json()
    assert [m["content"] for m in page["messages"]] == ["answer to: q3", "q4", "answer to: q4"]
    older = client.get(f"/api/session/{sid}/history?limit=3&before={page['nextCursor']}").get_json()
    assert [m["content"] for m in older["messages"]] == ["q2", "answer to: q2", "q3"]
    # Each message's id is its absolute position, the same numbering as the cursor.
    assert [m["id"] for m in page["messages"]] == [7, 8, 9] and page["nextCursor"] == 7
    assert [m["id"] for m in older["messages"]] == [4, 5, 6]


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "before=-3", "before=x"])
def test_bad_paging_parameters_are_422(client, query):
    sid = create(client)
    response = client.get(f"/api/session/{sid}/history?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"] == "validation_error"


@pytest.mark.parametrize("path", ["history", "validate"])
def test_unknown_session(client, path):
    response = client.get(f"/api/session/{uuid.uuid4()}/{path}")
    if path == "history":
        assert response.status_code == 404
        assert response.get_json()["error"] == "session_not_found"
    else:
        assert response.status_code == 200 and response.get_json()["valid"] is False


@pytest.mark.parametrize("bad", ["abc", "*", "%2A", "chat_session:x", "{tag}", "a%0Ab"])
def test_malformed_ids_never_reach_redis(client, fake_redis, monkeypatch, bad):
    sent = record_commands(monkeypatch, fake_redis)
    assert client.get(f"/api/session/{bad}/history").status_code == 404
    assert client.delete(f"/api/session/{bad}").status_code == 404
    body = client.get(f"/api/session/{bad}/validate").get_json()
    assert body["valid"] is False
    assert sent == []  # not one command, reads included
    create(client)
    assert sent  # the recorder does see what the app sends


def test_validate_known_session(client):
    sid = create(client)
    body = client.get(f"/api/session/{sid}/validate").get_json()
    assert body == {"success": True, "valid": True, "sessionId": sid}


def test_delete_removes_all_keys(client, fake_redis):
    sid = create(client)
    client.post("/api/send-message", json={"question": "x"}, headers={"session-id": sid})
    response = client.delete(f"/api/session/{sid}")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "message": "Session cleared successfully"}
    assert fake_redis.exists(*session_keys(sid)) == 0
    assert client.delete(f"/api/session/{sid}").status_code == 404
    assert client.get(f"/api/session/{sid}/validate").get_json()["valid"] is False


def test_uppercase_id_is_the_same_session(client):
    sid = create(client)
    assert client.get(f"/api/session/{sid.upper()}/validate").get_json()["valid"] is True


def test_answers_name_the_session_by_its_canonical_id(client):
    sid = create(client)
    upper = sid.upper()
    history = client.get(f"/api/session/{upper}/history").get_json()
    assert history["sessionId"] == sid
    assert client.get(f"/api/session/{upper}/validate").get_json() == {
        "success": True, "valid": True, "sessionId": sid,
    }  # fmt: skip
    sent = client.post("/api/send-message", json={"question": "q"}, headers={"session-id": upper})
    assert sent.get_json()["sessionId"] == sent.headers["session-id"] == sid
    client.delete(f"/api/session/{upper}")
    # Well-formed but gone: still canonical. Malformed: echoed as given (it names no session).
    assert client.get(f"/api/session/{upper}/validate").get_json()["sessionId"] == sid
    assert client.get("/api/session/Not-An-Id/validate").get_json()["sessionId"] == "Not-An-Id"
