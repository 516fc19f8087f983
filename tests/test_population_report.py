"""report.html opens offline in Debian's Chromium and its plots load (Playwright drives it).

``scripts/test`` installs Chromium (``scripts/ensure-deb chromium``) when it is missing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from service.config import load_settings
from service.population.run import PopulationRequest, screen_export

from .population_support import AS_OF, Recorder, export_with_unusable_lines

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    source = export_with_unusable_lines(root / "export")
    screen_export(source, PopulationRequest(out=root / "out", as_of=AS_OF), load_settings({}),
                  progress=Recorder())
    return root / "out" / "report.html"


def test_the_report_needs_nothing_from_the_network(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count('src="data:image/png;base64,') == 5


def test_chromium_shows_every_plot_offline(report: Path) -> None:
    assert shutil.which(CHROMIUM), "scripts/test installs chromium (scripts/ensure-deb)"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, offline=True)
        try:
            page = browser.new_page()
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url.split(":", 1)[0]))
            page.goto(report.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            title = page.title()
            text = page.inner_text("body")
        finally:
            browser.close()
    assert title == "IPEX population screening report"
    assert len(images) == 5
    assert all(complete and width > 200 and height > 100 for complete, width, height in images)
    assert set(fetched) <= {"file", "data"}
    assert "flagged: testing recommended\t1" in text
