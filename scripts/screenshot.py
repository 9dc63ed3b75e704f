"""Regenerate docs/images/chat-page.png: the chat page after a short conversation.

Runs the app in-process on the embedded store with a canned generator (so the picture
shows sources without a knowledge base), and photographs it with Debian's Chromium:

    .venv/bin/python scripts/screenshot.py [output.png]
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from chatbot_sessions import create_app  # noqa: E402
from chatbot_sessions.replies.base import Message, Reply, Source  # noqa: E402
from tests.support.browser import launch  # noqa: E402
from tests.support.web import serve_wsgi  # noqa: E402

CONVERSATION = {
    "How long do you keep my conversation?": Reply(
        text=(
            "A conversation is kept for 24 hours after your last message. Every question "
            "you ask resets that clock, and “New chat” deletes it right away."
        ),
        sources=(
            Source("Session lifetime", "docs/operations.md", 0.92),
            Source("Privacy notice", "https://example.com/privacy", 0.71),
        ),
    ),
    "Can I embed the chat on my own site?": Reply(
        text=(
            "Yes. Add one script tag pointing at widget.js and list your site's origin in "
            "CORS_ORIGINS; a chat button appears in the corner of every page."
        ),
        sources=(Source("Embedding the widget", "README.md", 0.88),),
    ),
}


class CannedGenerator:
    """Answers the screenshot's questions from ``CONVERSATION``."""

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        return CONVERSATION.get(question, Reply(text="I don't know that one yet."))


def main(output: Path) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log in the output
    app = create_app(
        {"REDIS_URL": None, "REDIS_HOST": None, "RATE_LIMIT_ENABLED": "0"},
        reply_generator=CannedGenerator(),
    )
    with serve_wsgi(app) as base_url, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 960, "height": 720})
        page.emulate_media(reduced_motion="reduce")
        page.goto(f"{base_url}/")
        expect(page.locator("section.cs-chat")).to_have_attribute("data-ready", "true")
        box = page.get_by_role("textbox", name="Your question")
        for n, question in enumerate(CONVERSATION, start=1):
            box.fill(question)
            box.press("Enter")
            expect(page.locator(".cs-msg--assistant")).to_have_count(n)
        box.fill("What does it cost?")  # a half-typed question makes the input obvious
        page.wait_for_timeout(300)  # let the last smooth scroll settle
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(output))
        browser.close()
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "docs/images/chat-page.png")
