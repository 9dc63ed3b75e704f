"""POST /api/session/<id>/messages/<messageId>/feedback, on fakeredis and a real Redis:
the answer, what history shows, every refusal (and that it stores nothing), the TTL rule,
and a replay after a lost reply."""

from __future__ import annotations

import pytest

from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.keys import feedback_key
from tests.support.api import send
from tests.support.commands import lose_replies, record_commands


@pytest.fixture
def client(make_app, redis_client):
    settings = {"MAX_MESSAGES_PER_SESSION": "6", "MAX_QUESTION_CHARS": "50", "SESSION_TTL": "600"}
    app = make_app(settings, redis_client)
    return app.test_client()


def session(client, turns: int = 2) -> str:
    sid = send(client, "q0").get_json()["sessionId"]
    for n in range(1, turns):
        send(client, f"q{n}", sid)
    return sid


def rate(client, sid: str, message_id: object, **body: object):
    return client.post(f"/api/session/{sid}/messages/{message_id}/feedback", json=body)


def history(client, sid: str) -> list[dict]:
    return client.get(f"/api/session/{sid}/history").get_json()["messages"]


def stored(redis_client, sid: str) -> dict[str, object]:
    """Every key naming the session and its content (lastActivity aside: any access sets it)."""
    found: dict[str, object] = {}
    for key in sorted(redis_client.scan_iter(match=f"*{sid}*")):
        kind = redis_client.type(key)
        if kind == "hash":
            found[key] = {k: v for k, v in redis_client.hgetall(key).items() if k != "lastActivity"}
        elif kind == "list":
            found[key] = redis_client.lrange(key, 0, -1)
        else:
            found[key] = redis_client.zrange(key, 0, -1)
    return found


def assert_refused(response, status: int, error: str) -> None:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False and body["error"] == error
    assert body["message"] and isinstance(body["details"], dict)


def test_rating_an_answer_answers_what_was_stored_and_history_shows_it(client):
    sid = session(client)
    response = rate(client, sid.upper(), 3, rating="down", comment="misses the point")
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True, "sessionId": sid, "messageId": 3, "rating": "down",
        "comment": "misses the point",
    }  # fmt: skip
    messages = history(client, sid)
    assert [m["id"] for m in messages] == [0, 1, 2, 3]
    assert [m.get("feedback") for m in messages] == [
        None, None, None, {"rating": "down", "comment": "misses the point"},
    ]  # fmt: skip


def test_a_second_rating_replaces_the_first(client, redis_client):
    sid = session(client)
    assert rate(client, sid, 1, rating="up", comment="thanks").status_code == 200
    again = rate(client, sid, 1, rating="down")
    assert again.status_code == 200 and again.get_json()["comment"] is None
    assert history(client, sid)[1]["feedback"] == {"rating": "down", "comment": None}
    assert redis_client.hlen(feedback_key(sid)) == 1


@pytest.mark.parametrize("comment", [None, "", "   ", "\n\t"])
def test_no_comment_null_and_blank_all_mean_no_comment(client, comment):
    sid = session(client, turns=1)
    body = {"rating": "up"} if comment is None else {"rating": "up", "comment": comment}
    response = rate(client, sid, 1, **body)
    assert response.status_code == 200 and response.get_json()["comment"] is None
    assert history(client, sid)[1]["feedback"] == {"rating": "up", "comment": None}


def test_a_comment_is_kept_as_written(client):
    sid = session(client, turns=1)
    text = "  «ünïcode» ✓ <b>kept</b>  "
    assert rate(client, sid, 1, rating="up", comment=text).get_json()["comment"] == text
    assert history(client, sid)[1]["feedback"]["comment"] == text


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "rating"),
        ({"rating": "meh"}, "rating"),
        ({"rating": "UP"}, "rating"),
        ({"rating": 1}, "rating"),
        ({"rating": "up", "comment": "x" * 51}, "comment"),  # MAX_QUESTION_CHARS=50
        ({"rating": "up", "comment": 5}, "comment"),
        ({"rating": "up", "comment": "\ud800"}, "comment"),
    ],
)
def test_bad_bodies_are_422_and_store_nothing(client, redis_client, body, field):
    sid = session(client)
    before = stored(redis_client, sid)
    response = client.post(f"/api/session/{sid}/messages/1/feedback", json=body)
    assert_refused(response, 422, "validation_error")
    assert field in response.get_json()["details"]["fields"]
    assert stored(redis_client, sid) == before


def test_a_comment_of_exactly_the_limit_is_fine(client):
    sid = session(client, turns=1)
    assert rate(client, sid, 1, rating="up", comment="x" * 50).status_code == 200


def test_a_body_that_is_not_json_is_400(client):
    sid = session(client, turns=1)
    response = client.post(
        f"/api/session/{sid}/messages/1/feedback", data="{", content_type="application/json"
    )
    assert_refused(response, 400, "invalid_json")


def test_a_question_cannot_be_rated(client, redis_client):
    sid = session(client)
    before = stored(redis_client, sid)
    assert_refused(rate(client, sid, 2, rating="up"), 422, "not_an_answer")
    assert stored(redis_client, sid) == before
    assert redis_client.exists(feedback_key(sid)) == 0


@pytest.mark.parametrize("bad", ["abc", "-1", "01", "1.0", "%20", "1e2", "9" * 20, "0x1"])
def test_malformed_message_ids_are_404_and_never_reach_redis(
    client, redis_client, monkeypatch, bad
):
    sid = session(client)
    sent = record_commands(monkeypatch, redis_client)
    assert_refused(rate(client, sid, bad, rating="up"), 404, "message_not_found")
    assert sent == []


@pytest.mark.parametrize("which", ["beyond the newest", "trimmed away"])
def test_ids_of_no_stored_message_are_404_and_store_nothing(client, redis_client, which):
    sid = session(client, turns=4)  # 8 appended, the newest 6 kept: ids 2..7
    assert [m["id"] for m in history(client, sid)] == [2, 3, 4, 5, 6, 7]
    message_id = {"beyond the newest": 9, "trimmed away": 1}[which]
    before = stored(redis_client, sid)
    assert_refused(rate(client, sid, message_id, rating="up"), 404, "message_not_found")
    assert stored(redis_client, sid) == before


def test_unknown_and_malformed_sessions_are_404_and_get_no_key(client, redis_client):
    unknown = new_session_id()
    assert_refused(rate(client, unknown, 1, rating="up"), 404, "session_not_found")
    assert list(redis_client.scan_iter(match=f"*{unknown}*")) == []
    assert_refused(rate(client, "not-a-session", 1, rating="up"), 404, "session_not_found")
    assert_refused(rate(client, "create", 1, rating="up"), 404, "session_not_found")


def test_the_feedback_key_lives_and_dies_with_the_session(client, redis_client):
    sid = session(client)
    rate(client, sid, 1, rating="up")
    key = feedback_key(sid)
    assert 590 < redis_client.ttl(key) <= 600  # SESSION_TTL, like every key of the session
    redis_client.expire(key, 5)
    history(client, sid)  # an access re-arms every key of the session
    assert 590 < redis_client.ttl(key) <= 600
    assert client.delete(f"/api/session/{sid}").status_code == 200
    assert list(redis_client.scan_iter(match=f"*{sid}*")) == []  # no key names it any more
    assert_refused(rate(client, sid, 1, rating="up"), 404, "session_not_found")
    assert list(redis_client.scan_iter(match=f"*{sid}*")) == []


def test_a_rating_whose_reply_was_lost_is_stored_once_and_answered(
    client, redis_client, monkeypatch
):
    sid = session(client)
    lost = lose_replies(monkeypatch, redis_client)  # the script runs, its reply is lost
    response = rate(client, sid, 1, rating="down", comment="once")
    assert len(lost) == 1 and response.status_code == 200
    assert response.get_json()["rating"] == "down" and response.get_json()["comment"] == "once"
    monkeypatch.undo()
    assert history(client, sid)[1]["feedback"] == {"rating": "down", "comment": "once"}
    assert redis_client.hlen(feedback_key(sid)) == 1


def test_redis_down_is_503(make_app, redis_down):
    response = rate(make_app().test_client(), new_session_id(), 1, rating="up")
    assert_refused(response, 503, "store_unavailable")
    assert response.headers["Retry-After"] == "1"
