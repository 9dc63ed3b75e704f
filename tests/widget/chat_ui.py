"""A page object for the widget, the same for the full page and the embedded panel.

Playwright's CSS and role locators reach into the widget's open shadow root, so tests read
what a person sees (and what the accessibility tree says) rather than widget internals.
"""

from __future__ import annotations

from playwright.sync_api import Locator, Page, Request, expect


class ChatUI:
    """Drive one chat widget on ``page``; ``api`` is the service it talks to."""

    def __init__(self, page: Page, api: str) -> None:
        self.page = page
        self.api = api
        self.chat: Locator = page.locator("section.cs-chat")
        self.input: Locator = page.get_by_role("textbox", name="Your question")
        self.send_button: Locator = page.get_by_role("button", name="Send")
        self.stop_button: Locator = page.get_by_role("button", name="Stop the answer")
        self.new_chat_button: Locator = page.get_by_role("button", name="New chat")
        self.log: Locator = page.get_by_role("log", name="Conversation")
        self.user_messages: Locator = page.locator(".cs-msg--user .cs-bubble")
        self.answers: Locator = page.locator(".cs-msg--assistant")
        self.typing: Locator = page.locator(".cs-typing")
        self.error: Locator = page.get_by_role("alert")
        self.retry_button: Locator = page.get_by_role("button", name="Try again")

    def open_page(self) -> ChatUI:
        """Load the service's own chat page and wait until it has a session."""
        self.page.goto(f"{self.api}/")
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        expect(self.chat).to_have_attribute("data-ready", "true")
        expect(self.chat).to_have_attribute("aria-busy", "false")

    def ask(self, question: str) -> None:
        """Type a question and press Enter."""
        self.input.fill(question)
        self.input.press("Enter")

    def ask_and_wait(self, question: str) -> Locator:
        """Ask, then return the answer's message item once it is written out whole.

        A streamed answer shows its first words long before it is stored: the item is
        ``aria-busy`` until the reply is done, and only then is the turn in Redis (a test
        reading Redis at the first words raced the append, and lost on a loaded machine).
        """
        before = self.answers.count()
        self.ask(question)
        expect(self.answers).to_have_count(before + 1)
        answer = self.answers.nth(before)
        expect(answer.locator(".cs-bubble")).not_to_be_empty()
        expect(answer).not_to_have_attribute("aria-busy", "true")
        return answer

    def stored_session_id(self) -> str | None:
        """The session id the widget keeps in this origin's localStorage."""
        return self.page.evaluate(
            "key => window.localStorage.getItem(key)", f"chatbot-sessions:session:{self.api}"
        )

    @property
    def pending_key(self) -> str:
        """Where the widget keeps the reply being written (JSON), in localStorage."""
        return f"chatbot-sessions:reply:{self.api}"

    def pending_reply(self) -> dict | None:
        """The reply the widget notes as being written: sessionId, replyId, question."""
        return self.page.evaluate(
            "key => JSON.parse(window.localStorage.getItem(key) || 'null')", self.pending_key
        )

    def set_pending_reply(self, pending: dict) -> None:
        """Note ``pending`` as the reply being written, as a page closed mid-answer leaves it."""
        self.page.evaluate(
            "([key, value]) => window.localStorage.setItem(key, JSON.stringify(value))",
            [self.pending_key, pending],
        )


def record_idempotency_keys(page: Page) -> list[str | None]:
    """A list that fills with the Idempotency-Key of each send-message POST ``page`` makes."""
    keys: list[str | None] = []

    def on_request(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/api/send-message"):
            keys.append(request.headers.get("idempotency-key"))

    page.on("request", on_request)
    return keys
