"""Regenerate docs/images/chat-page.png: the chat page after a short conversation.

Runs the app in-process on the embedded store with its default generator (answers quoted
from the shipped documentation, with their sources), and photographs it with Debian's
Chromium:

    .venv/bin/python scripts/screenshot.py [output.png]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from chatbot_sessions import create_app  # noqa: E402
from tests.support.browser import launch  # noqa: E402
from tests.support.web import serve_wsgi  # noqa: E402

QUESTIONS = [
    "How long is an idle session kept?",
    "Can I embed the chat on my own website?",
]


def main(output: Path) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log in the output
    app = create_app({"REDIS_URL": None, "REDIS_HOST": None, "RATE_LIMIT_ENABLED": "0"})
    with serve_wsgi(app) as base_url, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 960, "height": 1000})
        page.emulate_media(reduced_motion="reduce")
        page.goto(f"{base_url}/")
        expect(page.locator("section.cs-chat")).to_have_attribute("data-ready", "true")
        box = page.get_by_role("textbox", name="Your question")
        for n, question in enumerate(QUESTIONS, start=1):
            box.fill(question)
            box.press("Enter")
            expect(page.locator(".cs-msg--assistant")).to_have_count(n)
        box.fill("And how do I change that?")  # a half-typed question makes the input obvious
        page.wait_for_timeout(300)  # let the last smooth scroll settle
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(output))
        browser.close()
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "docs/images/chat-page.png")
