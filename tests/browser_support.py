"""Driving the system's headless Chromium with Playwright (no downloaded browsers).

`chromium_launch` starts the browser; the `browser_page` fixture (tests/conftest.py) gives each
test a fresh context and page, and `login` logs a user in through the login page.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError(
            "no Chromium found: install Debian's chromium package (`make chromium`) "
            "or set CHROMIUM to the browser's path"
        )
    return path


def chromium_launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
    )


def login(page: Page, live_server: object, username: str, password: str) -> None:
    """Log in through the login page, as a person would; waits until the login is done."""
    base = str(live_server.url)  # type: ignore[attr-defined]
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(lambda url: "/login/" not in url)


def page_errors(page: Page) -> list[str]:
    """Errors the page reported so far (JS exceptions, console errors such as CSP refusals);
    collected by the `browser_page` fixture."""
    return list(getattr(page, "mersv_errors", []))
