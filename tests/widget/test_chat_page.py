"""The chat page in headless Chromium against the app served in-process over real Redis,
with a reply generator whose answers (and sources, and timing) the tests control, under a
strict Content-Security-Policy (tests/widget/service.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import pytest
import requests
from playwright.sync_api import expect

from chatbot_sessions.domain import Message, Reply, Source
from tests.support.processes import RedisServer
from tests.support.web import serve_wsgi
from tests.widget.chat_ui import ChatUI, record_idempotency_keys
from tests.widget.service import app_with_csp

pytestmark = [pytest.mark.browser, pytest.mark.redis]

SEND = "**/api/send-message"
UUID_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SOURCES = (
    Source(title="Session <b>lifetime</b>", source="docs/sessions.md", score=0.91),
    Source(title="Operations handbook", source="https://docs.example.com/ops", score=0.55),
    Source(title="Sneaky", source="javascript:alert(1)", score=0.1),
)


class ScriptedGenerator:
    """Answers with fixed sources; while ``gate`` is set, answers wait for it (bounded)."""

    def __init__(self) -> None:
        self.gate: threading.Event | None = None

    def reset(self) -> None:
        self.gate = None

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        if self.gate is not None:
            self.gate.wait(timeout=15)
        return Reply(text=f"Here is what I found about: {question}", sources=SOURCES)


@pytest.fixture(scope="module")
def generator() -> ScriptedGenerator:
    return ScriptedGenerator()


def test_answer_shows_its_sources_as_text_and_safe_links(ui):
    answer = ui.ask_and_wait("how long are sessions kept?")
    expect(answer.locator(".cs-bubble")).to_have_text(
        "Here is what I found about: how long are sessions kept?"
    )
    sources = answer.locator(".cs-source")
    expect(sources).to_have_count(3)
    expect(sources.nth(0)).to_contain_text("Session <b>lifetime</b>")  # literally, as text
    expect(sources.nth(0)).to_contain_text("docs/sessions.md")
    assert answer.locator(".cs-source b").count() == 0
    link = sources.nth(1).get_by_role("link", name="Operations handbook")
    expect(link).to_have_attribute("href", "https://docs.example.com/ops")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(sources.nth(2).locator("a")).to_have_count(0)  # javascript: never becomes a link
    expect(sources.nth(2)).to_contain_text("javascript:alert(1)")

    ui.page.reload()  # sources come back with the history
    ui.wait_ready()
    expect(ui.answers.first.locator(".cs-source")).to_have_count(3)


def test_waiting_shows_typing_and_blocks_a_second_send(ui, generator):
    generator.gate = threading.Event()
    ui.ask("slow question")
    expect(ui.typing).to_be_visible()
    expect(ui.page.get_by_role("status")).to_contain_text("typing")
    # The reply is being written (streamed): Stop takes Send's place until it ends.
    expect(ui.stop_button).to_be_visible()
    expect(ui.send_button).to_be_hidden()
    expect(ui.new_chat_button).to_be_disabled()
    expect(ui.user_messages).to_have_text(["slow question"])
    expect(ui.input).to_have_value("")

    ui.ask("typed while waiting")  # Enter during a request must not send
    expect(ui.stop_button).to_be_visible()
    expect(ui.user_messages).to_have_count(1)

    generator.gate.set()
    expect(ui.answers).to_have_count(1)
    expect(ui.typing).to_be_hidden()
    expect(ui.stop_button).to_be_hidden()
    expect(ui.send_button).to_be_enabled()
    expect(ui.input).to_have_value("typed while waiting")


def test_enter_sends_and_shift_enter_adds_a_line(ui):
    expect(ui.input).to_be_focused()
    expect(ui.send_button).to_be_disabled()  # nothing to send yet
    ui.input.press_sequentially("line one")
    ui.input.press("Shift+Enter")
    ui.input.press_sequentially("line two")
    expect(ui.user_messages).to_have_count(0)
    ui.input.press("Enter")
    expect(ui.answers).to_have_count(1)
    assert ui.user_messages.first.text_content() == "line one\nline two"

    ui.input.fill("   ")
    ui.input.press("Enter")  # blank questions are not sent
    expect(ui.send_button).to_be_disabled()
    expect(ui.user_messages).to_have_count(1)

    ui.input.fill("by button")
    ui.send_button.focus()
    ui.page.keyboard.press("Enter")  # keyboard activation of the button
    expect(ui.answers).to_have_count(2)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("network", "Can't reach the chat service"),
        ("429", "You're sending messages too quickly. Please try again in 7 seconds."),
        ("500", "Something went wrong on our side"),
    ],
)
def test_a_failed_send_keeps_the_question_and_retries(ui, failure, expected):
    def fail(route):
        if failure == "network":
            route.abort("connectionreset")
        else:
            route.fulfill(
                status=int(failure),
                headers={"Retry-After": "7", "Content-Type": "application/json"},
                body='{"success": false, "error": "x", "message": "x", "details": {}}',
            )

    ui.page.route("**/api/send-message", fail)
    ui.ask("please keep me")
    expect(ui.error).to_contain_text(expected)
    expect(ui.input).to_have_value("please keep me")
    expect(ui.user_messages).to_have_count(0)
    expect(ui.send_button).to_be_enabled()

    ui.page.unroute("**/api/send-message")
    ui.retry_button.click()
    expect(ui.answers).to_have_count(1)
    expect(ui.user_messages).to_have_text(["please keep me"])
    expect(ui.error).to_be_hidden()
    expect(ui.input).to_have_value("")


def test_a_retry_reuses_the_failed_questions_key_and_a_new_question_gets_a_new_one(ui):
    keys = record_idempotency_keys(ui.page)
    busy = iter([(503, "store_unavailable"), (409, "idempotency_in_progress")])

    def fail(route):
        status, code = next(busy)
        route.fulfill(
            status=status,
            headers={"Retry-After": "1", "Content-Type": "application/json"},
            body=f'{{"success": false, "error": "{code}", "message": "x", "details": {{}}}}',
        )

    ui.page.route(SEND, fail)
    ui.ask("same question")
    expect(ui.error).to_contain_text("busy right now. Please try again in 1 second.")
    ui.retry_button.click()
    expect(ui.error).to_contain_text(
        "Your previous message is still being answered. Please try again in 1 second."
    )
    expect(ui.input).to_have_value("same question")  # a 409 keeps the question too
    ui.page.unroute(SEND)
    ui.retry_button.click()
    expect(ui.answers).to_have_count(1)

    ui.ask_and_wait("another question")
    ui.ask_and_wait("same question")  # asked again after its answer: a new turn
    assert len(keys) == 5
    first, *retries = keys[:3]
    assert first and UUID_V4.fullmatch(first)
    assert retries == [first, first]
    assert len({first, keys[3], keys[4]}) == 3


def test_a_retry_after_a_lost_response_stores_the_exchange_once(ui, service):
    replayed: list[str | None] = []
    ui.page.on(
        "response",
        lambda response: (
            replayed.append(response.headers.get("idempotent-replayed"))
            if response.url.endswith("/api/send-message")
            else None
        ),
    )

    def lose_the_response(route):
        route.fetch()  # the server answers and stores the turn ...
        route.abort("connectionreset")  # ... but the browser never hears back

    ui.page.route(SEND, lose_the_response, times=1)
    ui.ask("was I stored?")
    expect(ui.error).to_contain_text("Can't reach the chat service")
    history = requests.get(
        f"{service}/api/session/{ui.stored_session_id()}/history", timeout=5
    ).json()["messages"]
    assert [m["content"] for m in history if m["type"] == "user"] == ["was I stored?"]

    ui.retry_button.click()
    expect(ui.answers).to_have_count(1)
    expect(ui.user_messages).to_have_text(["was I stored?"])
    assert replayed == ["true"]  # the aborted attempt fired no response event
    history = requests.get(
        f"{service}/api/session/{ui.stored_session_id()}/history", timeout=5
    ).json()["messages"]
    assert [m["type"] for m in history] == ["user", "assistant"]
    ui.page.reload()
    ui.wait_ready()
    expect(ui.user_messages).to_have_text(["was I stored?"])


def test_keys_come_from_get_random_values_where_random_uuid_is_missing(service, page):
    # crypto.randomUUID exists only in secure contexts; an http page embedding the widget
    # has getRandomValues alone.
    page.add_init_script("delete Crypto.prototype.randomUUID")
    keys = record_idempotency_keys(page)
    ui = ChatUI(page, service).open_page()
    assert page.evaluate("typeof crypto.randomUUID") == "undefined"
    ui.ask_and_wait("first")
    ui.ask_and_wait("second")
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(key and UUID_V4.fullmatch(key) for key in keys), keys


def test_redis_outage_gives_a_503_message_then_recovers(tmp_path, generator, page):
    redis = RedisServer(tmp_path / "redis").start()
    revived = RedisServer(tmp_path / "redis", redis.port)  # same port, empty data set
    try:
        with serve_wsgi(app_with_csp(redis.url, generator)) as base_url:
            ui = ChatUI(page, base_url).open_page()
            before = ui.stored_session_id()
            redis.kill()
            ui.ask("are you there?")
            expect(ui.error).to_contain_text(
                "The chat service is busy right now. Please try again in 1 second."
            )
            expect(ui.input).to_have_value("are you there?")

            revived.start()
            ui.retry_button.click()
            expect(ui.answers).to_have_count(1)
            after = ui.stored_session_id()
            assert after and after != before  # the old session died with the data set
    finally:
        redis.stop()
        revived.stop()


def test_long_history_pages_back_on_request(ui, service):
    session_id = ui.stored_session_id()
    with requests.Session() as http:
        for n in range(51):
            http.post(
                f"{service}/api/send-message",
                json={"question": f"q{n}"},
                headers={"session-id": session_id},
                timeout=10,
            ).raise_for_status()
    ui.page.reload()
    ui.wait_ready()
    earlier = ui.page.get_by_role("button", name="Show earlier messages")
    expect(ui.page.locator(".cs-msg")).to_have_count(100)
    expect(ui.user_messages.first).to_have_text("q1")
    earlier.click()
    expect(ui.page.locator(".cs-msg")).to_have_count(102)
    expect(ui.user_messages.first).to_have_text("q0")
    expect(earlier).to_be_hidden()


def test_phone_sized_screen_has_no_sideways_scrolling(ui):
    ui.page.set_viewport_size({"width": 360, "height": 640})
    ui.ask_and_wait("x" * 300)  # one unbreakable word must wrap, not widen the page
    width = ui.page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 360
    for control in (ui.input, ui.send_button, ui.new_chat_button):
        box = control.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360
        assert box["y"] + box["height"] <= 640
