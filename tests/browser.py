"""Headless Chromium for the browser tests: Debian's ``chromium``, driven by Playwright.

Never a downloaded browser: ``scripts/test`` installs Debian's package when it is missing
(``scripts/ensure-deb chromium``). Each test gets a fresh context (a fresh profile: no
storage, cookies or cache from another test).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Debian's chromium is not installed: scripts/test installs it "
                           "(scripts/ensure-deb chromium)")
    return found


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A headless Chromium, closed (with its processes) when the block ends."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
