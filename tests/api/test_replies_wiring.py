"""The app's default generator end to end: retrieval by default, the LLM when configured."""

from __future__ import annotations

from chatbot_sessions import create_app
from tests.support.fake_llm import Answer, completion


def app_with(fake_redis, **config):
    return create_app({"RATE_LIMIT_ENABLED": "0", **config}, redis_client=fake_redis)


def test_default_generator_answers_from_shipped_docs_with_sources(fake_redis):
    client = app_with(fake_redis).test_client()
    body = client.post(
        "/api/send-message", json={"question": "How long does a session live?"}
    ).get_json()
    assert body["degraded"] is False and "SESSION_TTL" in body["reply"]
    assert body["sources"] and all({"title", "source", "score"} <= set(s) for s in body["sources"])
    history = client.get(f"/api/session/{body['sessionId']}/history").get_json()["messages"]
    assert history[1]["content"] == body["reply"] and history[1]["sources"] == body["sources"]


def test_llm_reply_is_returned_and_history_is_sent_in_order(fake_redis, fake_llm):
    fake_llm.respond = lambda request: completion(f"LLM says hi #{len(request['messages'])}")
    client = app_with(fake_redis, LLM_BASE_URL=fake_llm.base_url, LLM_MODEL="m1").test_client()
    first = client.post("/api/send-message", json={"question": "What is SESSION_TTL?"}).get_json()
    sid = first["sessionId"]
    second = client.post(
        "/api/send-message", json={"question": "And the default?"}, headers={"session-id": sid}
    ).get_json()
    assert first["reply"].startswith("LLM says hi") and second["degraded"] is False
    turns = [(m["role"], m["content"]) for m in fake_llm.received[-1].body["messages"][1:]]
    assert turns == [
        ("user", "What is SESSION_TTL?"),
        ("assistant", first["reply"]),
        ("user", "And the default?"),
    ]
    assert fake_llm.received[-1].body["model"] == "m1"


def test_llm_failure_degrades_but_stores_the_exchange(fake_redis, fake_llm):
    fake_llm.respond = lambda request: Answer(500, b"{}")
    client = app_with(fake_redis, LLM_BASE_URL=fake_llm.base_url).test_client()
    response = client.post("/api/send-message", json={"question": "How do I set SESSION_TTL?"})
    body = response.get_json()
    assert response.status_code == 200 and body["degraded"] is True and body["reply"]
    history = client.get(f"/api/session/{body['sessionId']}/history").get_json()["messages"]
    assert [m["content"] for m in history] == ["How do I set SESSION_TTL?", body["reply"]]
