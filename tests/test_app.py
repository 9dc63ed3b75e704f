"""The app factory: each part registers its resources, and closing the app releases them."""

from __future__ import annotations

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.extensions import close_app, resources
from tests.support.processes import free_port, wait_until


@pytest.mark.redis
def test_closing_the_app_closes_the_redis_pool_and_the_llm_client(redis_server, real_redis):
    # An LLM on a port nobody serves: its client is built, never called.
    llm = f"http://127.0.0.1:{free_port()}/v1"
    app = create_app({"REDIS_URL": redis_server, "LLM_BASE_URL": llm, "RATE_LIMIT_ENABLED": "0"})
    owned = resources(app)
    llm_client = owned.generator.client
    assert owned.store.touch("00000000-0000-4000-8000-000000000000") is False
    # The pool's one connection (start-up read the knowledge-base version through it too).
    pooled = str(owned.redis.client_id())

    def connected() -> set[str]:
        return {client["id"] for client in real_redis.client_list()}

    assert pooled in connected()
    close_app(app)
    assert llm_client.closed
    wait_until(lambda: pooled not in connected(), 5, what="the pool disconnected")
    close_app(app)  # a second close does nothing


def test_a_client_handed_in_belongs_to_its_maker(make_app, fake_redis):
    app = make_app()
    fake_redis.close = lambda: (_ for _ in ()).throw(AssertionError("must not be closed"))
    close_app(app)
    assert resources(app).redis is fake_redis


def test_without_a_secret_key_every_request_gets_a_null_session_that_refuses_writes(app):
    """The service keeps nothing in Flask's cookie session; writing to it fails loudly."""
    from flask import session

    seen = []
    for _ in range(2):
        with app.test_request_context("/"):
            app.preprocess_request()
            seen.append(session._get_current_object())
            assert dict(session) == {}
            with pytest.raises(RuntimeError, match="session is unavailable"):
                session["user"] = "someone"
            shared = session._get_current_object()
            with pytest.raises(RuntimeError, match="session is unavailable"):
                shared |= {"user": "someone"}
    assert seen[0] is seen[1]  # one shared, empty, write-refusing session
    assert dict(seen[0]) == {}


def test_with_a_secret_key_flask_sessions_work_as_usual(make_app):
    from flask import session

    app = make_app()
    app.secret_key = "for this test"

    @app.get("/count")
    def count() -> dict:
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    client = app.test_client()
    assert [client.get("/count").get_json()["n"] for _ in range(3)] == [1, 2, 3]
