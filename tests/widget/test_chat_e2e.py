"""The chat page in headless Chromium against the real service: gunicorn over real Redis.

The service runs its default reply generator here, so answers are only checked for being
there and non-empty; tests/widget/test_chat_page.py covers sources with a known generator.
"""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from chatbot_sessions.sessions.keys import session_keys
from tests.support.processes import wait_until
from tests.widget.chat_ui import ChatUI

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.gunicorn]


def _on_server(real_redis, session_id: str) -> bool:
    return real_redis.exists(*session_keys(session_id)) > 0


def test_conversation_survives_reload_and_new_chat_deletes_it(gunicorn_server, real_redis, page):
    server = gunicorn_server()
    ui = ChatUI(page, server.base_url).open_page()
    expect(ui.log).to_have_attribute("aria-live", "polite")
    first = ui.stored_session_id()
    assert first and _on_server(real_redis, first)

    ui.ask_and_wait("How long do you keep my chat?")
    ui.ask_and_wait("And after that?")
    assert real_redis.llen(session_keys(first)[1]) == 4

    page.reload()
    ui.wait_ready()
    expect(ui.user_messages).to_have_text(["How long do you keep my chat?", "And after that?"])
    expect(ui.answers).to_have_count(2)
    assert ui.stored_session_id() == first

    ui.new_chat_button.click()
    expect(ui.user_messages).to_have_count(0)
    expect(ui.answers).to_have_count(0)
    ui.wait_ready()
    second = ui.stored_session_id()
    assert second and second != first
    assert not _on_server(real_redis, first)
    validate = requests.get(f"{server.base_url}/api/session/{first}/validate", timeout=5)
    assert validate.json()["valid"] is False
    assert _on_server(real_redis, second)
    expect(ui.input).to_be_focused()

    page.reload()
    ui.wait_ready()
    expect(ui.answers).to_have_count(0)
    assert ui.stored_session_id() == second


def test_expired_session_is_replaced_silently(gunicorn_server, real_redis, page):
    server = gunicorn_server(SESSION_TTL="3")
    ui = ChatUI(page, server.base_url).open_page()
    first = ui.stored_session_id()
    ui.ask_and_wait("before it expires")
    wait_until(lambda: not _on_server(real_redis, first), 10, what="first session expired")

    # Mid-conversation: the server answers in a new session and the widget adopts it.
    ui.ask_and_wait("after it expired")
    second = ui.stored_session_id()
    assert second != first and _on_server(real_redis, second)
    expect(ui.error).to_be_hidden()

    page.reload()
    ui.wait_ready()
    expect(ui.user_messages).to_have_text(["after it expired"])

    # On load: the stored id no longer validates, so a fresh session replaces it quietly.
    wait_until(lambda: not _on_server(real_redis, second), 10, what="second session expired")
    page.reload()
    ui.wait_ready()
    third = ui.stored_session_id()
    assert third not in (first, second) and _on_server(real_redis, third)
    expect(ui.user_messages).to_have_count(0)
    expect(ui.error).to_be_hidden()
    ui.ask_and_wait("still works")


def test_html_in_a_question_is_shown_as_text(gunicorn_server, page, tmp_path):
    payload = "<img src=x onerror=alert(1)>"
    dialogs: list[str] = []
    requested: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requested.append(request.url))
    # A knowledge base whose answer quotes the same markup: the reply is untrusted text too.
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "markup.md").write_text(
        f"# Image markup\n\nAn image tag with an onerror handler looks like {payload} in a page.\n"
    )
    server = gunicorn_server(KNOWLEDGE_DIR=str(tmp_path / "kb"))
    ui = ChatUI(page, server.base_url).open_page()

    answer = ui.ask_and_wait(payload)
    expect(ui.user_messages).to_have_text([payload])
    expect(answer.locator(".cs-bubble")).to_contain_text(payload)  # quoted from markup.md
    page.reload()  # history is rendered by another code path
    ui.wait_ready()
    expect(ui.user_messages).to_have_text([payload])

    assert page.locator("img").count() == 0
    assert dialogs == []
    assert not [url for url in requested if url.rstrip("/").endswith("/x")]
