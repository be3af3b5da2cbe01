"""A real headless browser for the UI tests: Debian's Chromium (`apt-get install chromium`; `make test` installs it
where it can) driven by Playwright, started with a new empty profile and without the background connections that a
machine without internet refuses. GPTFLOW_CHROMIUM names another Chromium binary."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 60_000  # a UI's first load on a busy 2-core machine


def chromium() -> str:
    path = os.environ.get("GPTFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the UI tests need Chromium: apt-get install chromium (or set GPTFLOW_CHROMIUM to its binary)")
    return path


@contextmanager
def browser_page() -> Iterator:
    """A page of a fresh browser: nothing stored from an earlier visit, as a new user's."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


def page_text(page, url: str, expected: str) -> str:
    """The visible text of `url` once `expected` shows on it."""
    page.goto(url)
    page.get_by_text(expected, exact=False).first.wait_for()
    return page.inner_text("body")
