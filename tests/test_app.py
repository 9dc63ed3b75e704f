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
