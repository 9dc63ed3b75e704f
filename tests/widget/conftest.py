"""Browser fixtures: one headless Chromium per test module, a fresh context per test; and
for modules that define a module-scoped ``generator`` (with ``reset()``), the app served
in-process with it (``service``) and the chat page open on it (``ui``)."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.support.browser import CHROMIUM, chromium_available, launch
from tests.support.web import serve_wsgi
from tests.widget.chat_ui import ChatUI
from tests.widget.service import app_with_csp


@pytest.fixture(scope="module")
def browser():
    require(chromium_available(), f"Playwright or {CHROMIUM} is missing (install-system-deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page in its own context (own localStorage); fails the test on any uncaught JS error."""
    context = browser.new_context(viewport={"width": 1000, "height": 720})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"uncaught JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def service(redis_server, generator):
    """The app over real Redis with the module's ``generator``, under a strict CSP; its URL."""
    with serve_wsgi(app_with_csp(redis_server, generator)) as base_url:
        yield base_url


@pytest.fixture
def ui(service, generator, page):
    """The chat page open on ``service``, the generator reset; fails on any CSP report."""
    generator.reset()
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield ChatUI(page, service).open_page()
    assert violations == [], violations
