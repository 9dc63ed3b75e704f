"""Streamed answers in headless Chromium against the app served in-process over real Redis:
text shows as it is written, Stop keeps what was written, a reload mid-answer shows the
whole answer once, and answers render as safe Markdown (tests/widget/service.py: strict CSP).

The generator writes its scripted deltas with a pause between them, slow enough to watch.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
import requests
from playwright.sync_api import expect

from chatbot_sessions.domain import Message, Reply, Source
from tests.support.web import serve_wsgi
from tests.widget.chat_ui import ChatUI
from tests.widget.service import app_with_csp, embedded_widget

pytestmark = [pytest.mark.browser, pytest.mark.redis]

SOURCES = (Source(title="Streaming guide", source="docs/streaming.md", score=0.8),)
WORDS = tuple(f"word{n} " for n in range(1, 17))  # 4 s at the default pause
FULL = "".join(WORDS)


class SlowStream:
    """One reply being written: ``deltas`` with ``pause`` seconds before each but the first."""

    degraded = False

    def __init__(self, deltas: Sequence[str], pause: float) -> None:
        self.deltas = deltas
        self.pause = pause
        self.sources = SOURCES
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        for n, delta in enumerate(self.deltas):
            if n and self._closed.wait(self.pause):
                return
            yield delta

    def close(self) -> None:
        self._closed.set()


class SlowGenerator:
    """Streams its scripted deltas; ``generate`` (for JSON clients) gives them all at once."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.deltas: Sequence[str] = WORDS
        self.pause = 0.25

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        return Reply(text="".join(self.deltas), sources=SOURCES)

    def stream(self, question: str, history: Sequence[Message]) -> SlowStream:
        return SlowStream(self.deltas, self.pause)


@pytest.fixture(scope="module")
def generator() -> SlowGenerator:
    return SlowGenerator()


def _history(service: str, session_id: str | None) -> list[dict]:
    response = requests.get(f"{service}/api/session/{session_id}/history", timeout=5)
    return response.json()["messages"]


def _partial(bubble, full: str) -> str:
    """Wait until ``bubble`` shows some of ``full`` but not all of it; return that text."""
    expect(bubble).to_contain_text(full.split()[0])
    text = bubble.text_content() or ""
    assert text and full.startswith(text.strip()) and text.strip() != full.strip(), text
    return text


def test_text_shows_as_it_is_written(ui):
    types: list[str] = []
    ui.page.on(
        "response",
        lambda r: (
            types.append(r.headers.get("content-type", ""))
            if r.url.endswith("/api/send-message")
            else None
        ),
    )
    ui.ask("tell me slowly")
    answer = ui.answers.first
    bubble = answer.locator(".cs-bubble")
    partial = _partial(bubble, FULL)
    expect(ui.typing).to_be_hidden()  # the growing text is the sign of life now
    expect(ui.stop_button).to_be_visible()
    expect(answer.locator(".cs-source")).to_have_count(0)  # sources come with the end

    expect(bubble).to_have_text(FULL.strip())
    assert len(partial) < len(FULL.strip())
    expect(answer.locator(".cs-source")).to_have_count(1)
    expect(ui.stop_button).to_be_hidden()
    expect(ui.send_button).to_be_visible()
    expect(answer.locator(".cs-note")).to_have_count(0)
    assert types == ["text/event-stream; charset=utf-8"]
    assert ui.pending_reply() is None


def test_reload_mid_answer_shows_the_whole_answer_once(ui, service):
    ui.ask("survive a reload")
    _partial(ui.answers.first.locator(".cs-bubble"), FULL)
    pending = ui.pending_reply()
    assert pending and pending["question"] == "survive a reload"
    assert pending["sessionId"] == ui.stored_session_id()

    ui.page.reload()
    expect(ui.chat).to_have_attribute("data-ready", "true")
    bubble = ui.answers.first.locator(".cs-bubble")
    _partial(bubble, FULL)  # resumed from the first event, still being written
    expect(ui.stop_button).to_be_visible()
    expect(bubble).to_have_text(FULL.strip())
    ui.wait_ready()
    expect(ui.answers).to_have_count(1)
    expect(ui.user_messages).to_have_text(["survive a reload"])
    expect(ui.answers.first.locator(".cs-source")).to_have_count(1)
    assert ui.pending_reply() is None
    assert [m["type"] for m in _history(service, ui.stored_session_id())] == ["user", "assistant"]

    ui.page.reload()  # and from history alone, once more
    ui.wait_ready()
    expect(ui.answers).to_have_count(1)
    expect(ui.user_messages).to_have_count(1)


def test_reload_after_the_answer_ended_unseen_shows_it_once(ui, service):
    """The page went away just before ``done``: history already holds the answer."""
    ui.ask_and_wait("first")
    expect(ui.answers.first.locator(".cs-bubble")).to_have_text(FULL.strip())
    ui.ask("the same question")
    _partial(ui.answers.nth(1).locator(".cs-bubble"), FULL)
    pending = ui.pending_reply()
    expect(ui.answers.nth(1).locator(".cs-bubble")).to_have_text(FULL.strip())
    ui.wait_ready()
    ui.set_pending_reply(pending)

    ui.page.reload()
    ui.wait_ready()
    expect(ui.user_messages).to_have_text(["first", "the same question"])
    expect(ui.answers).to_have_count(2)
    expect(ui.answers.nth(1).locator(".cs-bubble")).to_have_text(FULL.strip())
    assert ui.pending_reply() is None
    assert len(_history(service, ui.stored_session_id())) == 4


def test_a_reply_that_cannot_be_followed_leaves_history_as_it_is(ui):
    ui.ask_and_wait("kept")
    ui.wait_ready()
    gone = {"sessionId": ui.stored_session_id(), "replyId": "0" * 32, "question": "lost"}
    ui.set_pending_reply(gone)
    ui.page.reload()
    ui.wait_ready()
    expect(ui.user_messages).to_have_text(["kept"])
    expect(ui.answers).to_have_count(1)
    expect(ui.error).to_be_hidden()
    assert ui.pending_reply() is None


def test_stop_keeps_the_text_so_far_marked_stopped(ui, service):
    ui.ask("stop me")
    answer = ui.answers.first
    bubble = answer.locator(".cs-bubble")
    partial = _partial(bubble, FULL)
    ui.stop_button.focus()
    ui.page.keyboard.press("Enter")  # keyboard activation
    expect(answer.locator(".cs-note--stopped")).to_have_text("Stopped")
    ui.wait_ready()
    expect(ui.send_button).to_be_visible()
    expect(ui.input).to_be_focused()  # not lost with the button
    kept = (bubble.text_content() or "").strip()
    assert kept.startswith(partial.strip()) and len(kept) < len(FULL.strip())
    time.sleep(1)  # the generator would have gone on: the text must not
    assert (bubble.text_content() or "").strip() == kept

    stored = _history(service, ui.stored_session_id())[-1]
    assert stored["type"] == "assistant" and stored.get("stopped") is True
    assert stored["content"].strip() == kept
    ui.page.reload()
    ui.wait_ready()
    expect(ui.answers.first.locator(".cs-note--stopped")).to_have_text("Stopped")
    expect(ui.answers.first.locator(".cs-bubble")).to_have_text(kept)


def test_a_stream_cut_after_its_start_is_picked_up_where_it_broke(service, generator, page):
    """The connection drops after two events: the widget resumes after the last one seen."""
    resumed: list[str] = []
    page.on("request", lambda r: resumed.append(r.url) if "/events?" in r.url else None)

    def cut(route):
        response = route.fetch()
        head = response.text().split("\n\n")[:2]  # start and the first delta
        route.fulfill(response=response, body="\n\n".join(head) + "\n\n")

    generator.reset()
    generator.pause = 0.1
    ui = ChatUI(page, service).open_page()
    page.route("**/api/send-message", cut, times=1)
    ui.ask("cut me off")
    expect(ui.answers.first.locator(".cs-bubble")).to_have_text(FULL.strip())
    expect(ui.answers).to_have_count(1)
    assert len(resumed) == 1 and resumed[0].endswith("/events?after=2"), resumed
    expect(ui.error).to_be_hidden()


MARKDOWN = (
    "## Sessions\n\nThey last **thirty",
    " minutes** by default, *renewed* on each `GET /hist",
    "ory` call.\n\n- one\n- two\n",
    "- three\n\n1. first\n2. second\n\n```\nprint('hi')\n",
    "x = 1\n```\n\nSee [the docs](https://docs.example.com/sessions).",
)


def test_answers_render_as_markdown_elements(ui, generator):
    generator.deltas = MARKDOWN
    answer = ui.ask_and_wait("markdown please")
    for view in (answer, None):
        if view is None:  # the same from history
            ui.page.reload()
            ui.wait_ready()
            view = ui.answers.first
        bubble = view.locator(".cs-bubble")
        expect(bubble.locator("h4")).to_have_text("Sessions")
        expect(bubble.locator("strong")).to_have_text("thirty minutes")
        expect(bubble.locator("em")).to_have_text("renewed")
        expect(bubble.locator("p > code")).to_have_text("GET /history")
        expect(bubble.locator("ul > li")).to_have_text(["one", "two", "three"])
        expect(bubble.locator("ol > li")).to_have_text(["first", "second"])
        expect(bubble.locator("pre > code")).to_have_text("print('hi')\nx = 1")
        link = bubble.get_by_role("link", name="the docs")
        expect(link).to_have_attribute("href", "https://docs.example.com/sessions")
        expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
        expect(link).to_have_attribute("target", "_blank")
        assert "**" not in (bubble.text_content() or "")
    # A question is never Markdown.
    expect(ui.user_messages.first.locator("*")).to_have_count(0)


HOSTILE = (
    "<img src=x onerror=alert(1)> and ",
    "[click](javascript:alert(1)) and [data](data:text/html,<b>x</b>) ",
    "<script>alert(2)</script> **<b>bold</b>** `<i>code</i>`\n\n",
    "- [x](JaVaScRiPt:alert(3))\n\n```\n<svg onload=alert(4)>\n```",
)


def test_markup_in_a_streamed_answer_stays_text(ui, generator):
    dialogs: list[str] = []
    requested: list[str] = []
    ui.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ui.page.on("request", lambda request: requested.append(request.url))
    generator.deltas = HOSTILE
    for reload in (False, True):
        if reload:
            ui.page.reload()
            ui.wait_ready()
            answer = ui.answers.first
        else:
            answer = ui.ask_and_wait("<b>hostile</b>")
            expect(ui.stop_button).to_be_hidden()
        bubble = answer.locator(".cs-bubble")
        expect(bubble).to_contain_text("<img src=x onerror=alert(1)>")
        expect(bubble).to_contain_text("[click](javascript:alert(1))")
        expect(bubble).to_contain_text("<script>alert(2)</script>")
        expect(bubble.locator("strong")).to_have_text("<b>bold</b>")
        expect(bubble.locator("p > code")).to_have_text("<i>code</i>")
        expect(bubble.locator("pre")).to_have_text("<svg onload=alert(4)>")
        expect(bubble.locator("li")).to_have_text("[x](JaVaScRiPt:alert(3))")
        assert bubble.locator("a, img, script, b, i, svg").count() == 0
        expect(ui.user_messages.first).to_have_text("<b>hostile</b>")
    assert ui.page.locator("img, svg:not([aria-hidden])").count() == 0
    assert dialogs == []
    assert not [url for url in requested if re.search(r"/x$|^data:|^javascript:", url)]


def test_a_json_answer_is_shown_as_before(ui):
    """A server that does not stream (or a proxy that turned it into JSON) still works."""
    accepts: list[str | None] = []

    def json_answer(route):
        accepts.append(route.request.headers.get("accept"))
        body = {
            "success": True,
            "reply": "A plain JSON answer",
            "sessionId": ui.stored_session_id(),
            "sessionID": ui.stored_session_id(),
            "sources": [],
            "degraded": True,
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    ui.page.route("**/api/send-message", json_answer)
    answer = ui.ask_and_wait("old server?")
    expect(answer.locator(".cs-bubble")).to_have_text("A plain JSON answer")
    expect(answer.locator(".cs-note")).to_contain_text("quotes the documentation")
    expect(ui.send_button).to_be_visible()
    assert accepts and "text/event-stream" in (accepts[0] or "")
    assert ui.pending_reply() is None


SPLIT = b"\x00"  # where the awkward server below cuts its body into separate writes


def _awkward_body(session_id: str) -> list[bytes]:
    """Our events as another server might send them: CRLF, LF and CR line ends, comments,
    unknown fields and events, data over two lines, and writes cut mid-line, between CR and
    LF, and inside a UTF-8 character."""
    start = json.dumps({"sessionId": session_id, "sessionID": session_id, "replyId": "r" * 32})
    done = json.dumps({
        "success": True, "reply": "Chunked café fine.", "sessionId": session_id,
        "sessionID": session_id, "degraded": False, "replyId": "r" * 32, "stopped": False,
        "sources": [{"title": "Parser notes", "source": "docs/sse.md", "score": 1.0}],
    })  # fmt: skip
    body = (
        b": keep-alive\r\n\r\n"
        b"id: 1\r\nevent: start\r\ndata: " + start.encode() + b"\r\x00\n\r\n"
        b'id: 2\r\ndata: {"text":"Chun\x00ked "}\r\x00\nev\x00ent: delta\r\n\r\n'
        b'id: 3\nevent: delta\ndata: {"text":"caf\xc3\x00\xa9 "}\n\n'
        b": a comment\nretry: 1000\nunknown: field\n"
        b'id: 4\nevent: delta\ndata: {"text":\n\x00data: "fine."}\n\n'
        b'id: 5\nevent: surprise\ndata: {"text":"not shown"}\n\n\x00'
    )
    return [*body.split(SPLIT), b"id: 6\revent: done\rdata: " + done.encode() + b"\r\r"]


def test_events_are_read_however_the_bytes_arrive(redis_server, generator, page):
    app = app_with_csp(redis_server, generator)

    def awkward(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/api/send-message":
            return app(environ, start_response)
        parts = _awkward_body(environ.get("HTTP_SESSION_ID", ""))
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def writes() -> Iterator[bytes]:
            for n, part in enumerate(parts):
                time.sleep(2.0 if n == len(parts) - 1 else 0.05)  # then a long wait for done
                yield part

        return writes()

    with serve_wsgi(awkward) as base_url:
        ui = ChatUI(page, base_url).open_page()
        ui.ask("parse this")
        answer = ui.answers.first
        expect(answer.locator(".cs-bubble")).to_have_text("Chunked café fine.")
        expect(ui.stop_button).to_be_visible()  # done has not come yet: this is the deltas
        assert answer.locator(".cs-source").count() == 0
        expect(answer.locator(".cs-source")).to_have_count(1)
        expect(ui.stop_button).to_be_hidden()
        expect(answer.locator(".cs-bubble")).to_have_text("Chunked café fine.")
        assert ui.pending_reply() is None


def test_embedded_on_another_site_it_stops_and_resumes_across_origins(
    redis_server, generator, page, tmp_path
):
    """Stop and resume are simple cross-origin requests (no preflight) the CORS grant covers."""
    generator.reset()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    with embedded_widget(page, tmp_path, redis_server, generator) as embedded:
        ui = embedded.ui
        ui.ask("stop across origins")
        _partial(ui.answers.first.locator(".cs-bubble"), FULL)
        ui.stop_button.click()
        expect(ui.answers.first.locator(".cs-note--stopped")).to_be_visible()
        ui.wait_ready()

        ui.ask("resume across origins")
        _partial(ui.answers.nth(1).locator(".cs-bubble"), FULL)
        page.reload()
        page.get_by_role("button", name="Open Chat").click()
        expect(ui.answers.nth(1).locator(".cs-bubble")).to_have_text(FULL.strip())
        ui.wait_ready()
        expect(ui.answers).to_have_count(2)
        expect(ui.user_messages).to_have_text(["stop across origins", "resume across origins"])
    assert not [line for line in console if "CORS" in line], console
