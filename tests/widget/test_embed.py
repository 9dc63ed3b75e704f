"""The one-tag embed on a page from a second loopback origin, against gunicorn over Redis:
it works when that origin is in CORS_ORIGINS and is refused (no CORS grant) when not."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chatbot_sessions.sessions.keys import session_keys
from tests.support.web import serve_static
from tests.widget.chat_ui import ChatUI, record_idempotency_keys

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.gunicorn]

# A host page with styles of its own that must not reach the widget (and vice versa).
HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme shop</title>
<style>button {{ background: rgb(255, 0, 0) !important; }} body {{ font-family: serif; }}</style>
</head><body><h1>Acme shop</h1><p>Welcome.</p>
<script src="{api}/widget.js" data-api="{api}" defer></script>
</body></html>
"""


@pytest.fixture
def sites(tmp_path, gunicorn_server):
    """(api, allowed site, unlisted site): the service trusts only the first site's origin."""
    with (
        serve_static(tmp_path / "allowed", {}) as allowed,
        serve_static(tmp_path / "unlisted", {}) as unlisted,
    ):
        server = gunicorn_server(CORS_ORIGINS=allowed)
        for root in ("allowed", "unlisted"):
            (tmp_path / root / "index.html").write_text(HOST_PAGE.format(api=server.base_url))
        yield server.base_url, allowed, unlisted


def test_embed_from_a_listed_origin_chats(sites, real_redis, page):
    api, allowed, _ = sites
    keys = record_idempotency_keys(page)
    page.goto(f"{allowed}/index.html")
    launcher = page.get_by_role("button", name="Open Chat")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("dialog")).to_be_hidden()

    launcher.click()
    panel = page.get_by_role("dialog", name="Chat")
    expect(panel).to_be_visible()
    ui = ChatUI(page, api)
    ui.wait_ready()
    expect(ui.input).to_be_focused()
    ui.ask_and_wait("do you ship abroad?")

    # The preflight granted the widget's Idempotency-Key: the send carried one and worked.
    assert [len(key or "") for key in keys] == [36]
    session_id = ui.stored_session_id()  # kept in the host page's own localStorage
    assert session_id and real_redis.llen(session_keys(session_id)[1]) == 2
    send_colour = ui.send_button.evaluate("b => getComputedStyle(b).backgroundColor")
    assert send_colour == "rgb(37, 99, 235)"  # the host's button rule did not leak in

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name="Open Chat")).to_be_focused()
    page.reload()
    page.get_by_role("button", name="Open Chat").click()
    ui.wait_ready()
    expect(ui.user_messages).to_have_text(["do you ship abroad?"])


def test_embed_from_an_unlisted_origin_is_refused(sites, page):
    api, _, unlisted = sites
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.goto(f"{unlisted}/index.html")
    page.get_by_role("button", name="Open Chat").click()
    ui = ChatUI(page, api)
    expect(ui.error).to_contain_text("Can't reach the chat service")
    assert any("blocked by CORS policy" in line for line in console), console
    assert ui.stored_session_id() is None

    ui.ask("hello?")
    expect(ui.error).to_contain_text("Can't reach the chat service")
    expect(ui.input).to_have_value("hello?")
    expect(ui.answers).to_have_count(0)
