"""Headless Chromium (Debian's) driven by Playwright's sync API against pytest-django's
live server: one browser for the session, a fresh context (cookies, storage) per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-long-browser-test-password"
# Screenshots to look at: in this checkout's var/ (ignored by git), so that checkouts
# sharing a machine do not overwrite each other's in /tmp.
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("MEDIAOPT_SCREENSHOTS") or ROOT / "var" / "screenshots")


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save the page as ``name``.png where the tests print it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    # From start() to stop(), Playwright's sync API keeps an asyncio loop running in this
    # thread, and Django refuses ORM calls under a running loop. The flag must
    # hold exactly as long as the loop does, including for tests that run after ours.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield browser
            finally:
                browser.close()
        finally:
            playwright.stop()


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url)
    # Generous for a loaded CI machine; expect() still returns as soon as it holds.
    context.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def superuser(browser: Browser, transactional_db) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


def log_in(page: Page, user: User, password: str = PASSWORD) -> None:
    """Through the admin's login form, as a person would."""
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text(user.username)


@pytest.fixture
def admin_page(page: Page, superuser: User) -> Page:
    log_in(page, superuser)
    return page
