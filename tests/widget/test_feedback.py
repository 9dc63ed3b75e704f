"""Thumbs up / down under answers, in headless Chromium against the app served in-process over
real Redis (tests/widget/service.py: strict CSP): a rating is stored on the server, shown
pressed, replaced by the other one, restored from history after a reload, usable by keyboard
alone and across origins; a failed save keeps what was pressed and says so.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from playwright.sync_api import Locator, expect

from tests.support.streams import SlowGenerator
from tests.widget.chat_ui import ChatUI
from tests.widget.service import embedded_widget

pytestmark = [pytest.mark.browser, pytest.mark.redis]

FEEDBACK = "**/api/session/*/messages/*/feedback"
NOTICE = "Couldn't save your rating. Please try again."


class Generator(SlowGenerator):
    """Streams ``answer to: <question> w0 ... w4``; quickly unless a test slows it down."""

    def reset(self) -> None:
        self.pause = 0.02


@pytest.fixture(scope="module")
def generator() -> Generator:
    return Generator()


def helpful(answer: Locator) -> Locator:
    return answer.get_by_role("button", name="Helpful", exact=True)


def not_helpful(answer: Locator) -> Locator:
    return answer.get_by_role("button", name="Not helpful", exact=True)


def expect_rating(answer: Locator, rating: str | None) -> None:
    """``answer``'s thumbs show ``rating`` (None: neither) as pressed."""
    expect(helpful(answer)).to_have_attribute("aria-pressed", str(rating == "up").lower())
    expect(not_helpful(answer)).to_have_attribute("aria-pressed", str(rating == "down").lower())


def stored_feedback(service: str, session_id: str | None) -> list[dict | None]:
    """The ``feedback`` of each message in the session's history, as the API shows it."""
    response = requests.get(f"{service}/api/session/{session_id}/history", timeout=5)
    assert response.status_code == 200, response.text
    return [message.get("feedback") for message in response.json()["messages"]]


def answered(ui: ChatUI, question: str) -> Locator:
    """Ask ``question``; the answer's item once it is finished and rateable."""
    answer = ui.ask_and_wait(question)
    expect(helpful(answer)).to_be_visible()
    ui.wait_ready()
    return answer


def test_a_rating_is_stored_switched_and_restored_after_reload(ui, service):
    answered(ui, "first")
    answer = answered(ui, "second")
    expect_rating(answer, None)
    assert stored_feedback(service, ui.stored_session_id()) == [None] * 4

    helpful(answer).click()
    expect_rating(answer, "up")
    up = {"rating": "up", "comment": None}
    assert stored_feedback(service, ui.stored_session_id()) == [None, None, None, up]

    not_helpful(answer).click()
    expect_rating(answer, "down")
    down = {"rating": "down", "comment": None}
    assert stored_feedback(service, ui.stored_session_id()) == [None, None, None, down]

    ui.page.reload()
    ui.wait_ready()
    expect_rating(ui.answers.nth(0), None)
    expect_rating(ui.answers.nth(1), "down")

    # Pressing the pressed one again keeps it: a rating is replaced, never taken back.
    requests_made: list[str] = []
    ui.page.on("request", lambda r: requests_made.append(r.url) if "/feedback" in r.url else None)
    not_helpful(ui.answers.nth(1)).click()
    expect_rating(ui.answers.nth(1), "down")
    helpful(ui.answers.nth(0)).click()
    expect_rating(ui.answers.nth(0), "up")
    assert len(requests_made) == 1
    assert stored_feedback(service, ui.stored_session_id()) == [None, up, None, down]


def test_thumbs_work_by_keyboard_alone(ui, service):
    answer = answered(ui, "keyboard please")
    ui.input.focus()
    ui.page.keyboard.press("Shift+Tab")  # the last control before the input: Not helpful
    expect(not_helpful(answer)).to_be_focused()
    ui.page.keyboard.press("Space")
    expect_rating(answer, "down")
    expect(not_helpful(answer)).to_be_focused()  # not lost when its state changes

    ui.page.keyboard.press("Shift+Tab")
    expect(helpful(answer)).to_be_focused()
    ui.page.keyboard.press("Enter")
    expect_rating(answer, "up")
    expect(helpful(answer)).to_be_focused()
    assert stored_feedback(service, ui.stored_session_id())[-1] == {"rating": "up", "comment": None}

    ui.page.keyboard.press("Tab")
    ui.page.keyboard.press("Tab")
    expect(ui.input).to_be_focused()  # the thumbs sit in the tab order, nothing traps focus


def test_only_finished_answers_have_thumbs(ui):
    answered(ui, "one")
    answered(ui, "two")
    expect(ui.user_messages).to_have_count(2)
    expect(ui.page.locator(".cs-msg--user .cs-thumb")).to_have_count(0)
    expect(ui.page.locator(".cs-msg--assistant .cs-thumb")).to_have_count(4)

    # A send that fails shows an error, and no answer to rate.
    ui.page.route("**/api/send-message", lambda route: route.fulfill(status=503, body="{}"))
    ui.ask("three")
    expect(ui.error).to_be_visible()
    expect(ui.answers).to_have_count(2)
    expect(ui.page.get_by_role("button", name="Helpful", exact=True)).to_have_count(2)

    ui.page.reload()
    ui.wait_ready()
    expect(ui.page.locator(".cs-msg--user .cs-thumb")).to_have_count(0)
    expect(ui.page.locator(".cs-msg--assistant .cs-thumb")).to_have_count(4)


def test_a_streamed_answer_gets_its_thumbs_once_done(ui, service, generator):
    generator.pause = 0.3
    ui.ask("take your time")
    answer = ui.answers.first
    expect(answer.locator(".cs-bubble")).to_contain_text("answer to:")
    expect(ui.stop_button).to_be_visible()
    expect(answer.locator(".cs-thumb")).to_have_count(0)  # still being written

    expect(answer.locator(".cs-bubble")).to_have_text("answer to: take your time w0 w1 w2 w3 w4")
    expect_rating(answer, None)
    helpful(answer).click()
    expect_rating(answer, "up")
    assert stored_feedback(service, ui.stored_session_id())[-1] == {"rating": "up", "comment": None}

    # A stopped answer is an answer too: rateable once it has stopped.
    generator.pause = 1.0
    ui.ask("stop me")
    stopped = ui.answers.nth(1)
    expect(stopped.locator(".cs-bubble")).to_contain_text("answer to:")
    expect(stopped.locator(".cs-thumb")).to_have_count(0)
    ui.stop_button.click()
    expect(stopped.locator(".cs-note--stopped")).to_be_visible()
    not_helpful(stopped).click()
    expect_rating(stopped, "down")
    assert stored_feedback(service, ui.stored_session_id())[-1]["rating"] == "down"


def test_a_fresh_answer_gets_its_thumbs_from_the_send_without_reading_history(ui, service):
    histories: list[str] = []
    ui.page.on("request", lambda r: histories.append(r.url) if "/history" in r.url else None)
    first = answered(ui, "first question")
    second = answered(ui, "second question")
    assert histories == []  # the done event named each answer: no history read per turn
    helpful(second).click()
    not_helpful(first).click()
    expect_rating(second, "up")
    expect_rating(first, "down")
    down, up = {"rating": "down", "comment": None}, {"rating": "up", "comment": None}
    assert stored_feedback(service, ui.stored_session_id()) == [None, down, None, up]


def test_an_answer_without_a_message_id_gets_its_thumbs_from_history(ui, service):
    """An older server's answer, or one whose id is unknown (null): history says it."""

    def as_an_older_server(route):
        response = route.fetch()
        route.fulfill(response=response, body=re.sub(r',"messageId":\d+', "", response.text()))

    ui.page.route("**/api/send-message", as_an_older_server)
    histories: list[str] = []
    ui.page.on("request", lambda r: histories.append(r.url) if "/history" in r.url else None)
    answer = answered(ui, "old server")
    assert len(histories) == 1
    helpful(answer).click()
    expect_rating(answer, "up")
    assert stored_feedback(service, ui.stored_session_id())[-1] == {"rating": "up", "comment": None}


def test_a_failed_save_keeps_the_rating_shown_and_says_so(ui, service):
    answer = answered(ui, "rate me")
    helpful(answer).click()
    expect_rating(answer, "up")
    notice = answer.get_by_role("status")
    expect(notice).to_have_text("")

    statuses: list[int] = []
    ui.page.on("response", lambda r: statuses.append(r.status) if "/feedback" in r.url else None)
    ui.page.route(FEEDBACK, lambda route: route.fulfill(status=503, body="{}"))
    not_helpful(answer).click()
    expect(notice).to_have_text(NOTICE)
    expect_rating(answer, "up")
    assert statuses == [503]
    expect(ui.error).to_be_hidden()  # small and under the answer: the chat goes on
    expect(ui.input).to_be_enabled()
    assert stored_feedback(service, ui.stored_session_id())[-1] == {"rating": "up", "comment": None}

    ui.page.unroute(FEEDBACK)
    not_helpful(answer).click()
    expect_rating(answer, "down")
    expect(notice).to_have_text("")
    assert stored_feedback(service, ui.stored_session_id())[-1]["rating"] == "down"


def test_a_rate_limited_rating_says_when_to_try_again(ui, service):
    answer = answered(ui, "rate me")
    ui.page.route(
        FEEDBACK,
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "7"},
            content_type="application/json",
            body=json.dumps(
                {"success": False, "error": "rate_limited", "message": "slow", "details": {}}
            ),
        ),
    )
    helpful(answer).click()
    expect(answer.get_by_role("status")).to_have_text(
        "Too many ratings for now. Please try again in 7 s."
    )
    expect_rating(answer, None)
    assert not any(stored_feedback(service, ui.stored_session_id()))


def test_rating_works_embedded_on_another_site(redis_server, generator, page, tmp_path):
    """The rating POST sends Content-Type: application/json, so it needs a preflight."""
    generator.reset()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    with embedded_widget(page, tmp_path, redis_server, generator) as embedded:
        site, api, ui = embedded.site, embedded.api, embedded.ui
        answer = answered(ui, "rate across origins")
        helpful(answer).click()
        expect_rating(answer, "up")
        not_helpful(answer).click()
        expect_rating(answer, "down")
        assert stored_feedback(api, ui.stored_session_id())[-1]["rating"] == "down"

        preflight = requests.options(
            f"{api}/api/session/{ui.stored_session_id()}/messages/1/feedback",
            headers={
                "Origin": site,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            timeout=5,
        )
        assert preflight.headers.get("Access-Control-Allow-Origin") == site
        assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()

        page.reload()
        page.get_by_role("button", name="Open Chat").click()
        ui.wait_ready()
        expect_rating(ui.answers.first, "down")
    assert not [line for line in console if "CORS" in line], console
