"""Browser fixtures: one headless Chromium per test module, a fresh context per test."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.support.browser import CHROMIUM, chromium_available, launch


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
