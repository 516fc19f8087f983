"""The evidence timeline in a real browser, launched by a stand-in EHR the whole SMART way.

The service and the stand-in EHR (authorization server + FHIR server) run on loopback;
headless Chromium opens the card's smart link as an EHR would (``iss`` + ``launch``),
fhirclient is sent to the EHR's authorization endpoint with PKCE, back to the app with a
code, exchanges it at the token endpoint (the EHR checks the verifier), reads the record
with the granted token, and the service screens it. Checked: the classic infant-boy
triad drawn with its three criteria at their ages, a girl, a low-risk child ("no
criteria met"), a refused authorization (a clear message, nothing read, nothing shown),
accessibility (axe-core, keyboard), no sideways scroll at 1280x800, and nothing left in
the browser's storage. Screenshots go to the test's output directory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page

from service.app import create_app

from .browser import VIEWPORT, headless_chromium
from .cds_support import SCENARIOS, SERVICE, prefetch_call
from .fixed_clock import FixedClock
from .scenarios import Scenario, load_scenario
from .smart_ehr import StandInEhr, serving, stand_in_ehr

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "timeline" / "node_modules" / "axe-core" / "axe.min.js"
CLIENT_ID = "ipex-screen-timeline"
SCOPE = ("launch patient/Patient.rs patient/Condition.rs patient/Observation.rs "
         "patient/ServiceRequest.rs")
CLASSIC = SCENARIOS / "classic-infant-boy-triad.json"
GIRL = SCENARIOS / "female-classic-triad-gene-panel.json"
LOW_RISK = SCENARIOS / "low-risk-toddler-short-diarrhea-no-criteria.json"
DAYS_PER_MONTH = 365.25 / 12


@dataclass
class World:
    service: str
    ehr: StandInEhr
    clock: FixedClock
    browser: Browser
    shots: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("timeline-state")
    clock = FixedClock()
    app: Flask = create_app({"state_db": str(state / "state.sqlite3"), "cds_auth": "off"},
                            today=clock.today, now=clock.now)
    shots = tmp_path_factory.mktemp("timeline-screenshots")
    with serving(app) as service, stand_in_ehr(
            client_id=CLIENT_ID, redirect_uri=f"{service}/timeline/index.html") as ehr, \
            headless_chromium() as browser:
        yield World(service, ehr, clock, browser, shots)


def _card(world: World, scenario: Scenario) -> dict[str, Any] | None:
    """The CDS card the service gives for the scenario, asked over HTTP as an EHR does."""
    import requests

    world.clock.set_today(scenario.as_of)
    answer = requests.post(world.service + SERVICE, json=prefetch_call(scenario.bundle),
                           timeout=30)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    return cards[0] if cards else None


def _open(world: World, scenario: Scenario, *, refuse: bool = False,
          context_options: dict[str, Any] | None = None) -> tuple[Page, str]:
    """Launch the timeline from the EHR for the scenario's patient; the page and patient id."""
    pid = world.ehr.add_record(scenario.bundle)
    card = _card(world, scenario)
    if card is not None:  # launched from the card: its smart link and appContext
        (link,) = [link for link in card["links"] if link["type"] == "smart"]
        url, app_context = link["url"], link["appContext"]
    else:  # no card (tier low): launched from the EHR's app menu, screening as of today
        url, app_context = f"{world.service}/timeline/launch.html", None
    launch = world.ehr.launch(pid, app_context=app_context, refuse=refuse)
    context = world.browser.new_context(viewport=VIEWPORT, **(context_options or {}))
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{url}?{urlencode({'iss': world.ehr.fhir_base, 'launch': launch})}")
    page.wait_for_selector("#timeline:not([hidden]) .summary, #problem .problem",
                           timeout=20_000)
    return page, pid


def _shot(world: World, page: Page, name: str) -> Path:
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _storage(page: Page) -> list[int]:
    return list(page.evaluate("[sessionStorage.length, localStorage.length]"))


def _no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, "
                           "document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"scrolls sideways at 1280x800: {widths}"


def _x_axis(page: Page) -> tuple[float, float]:
    """(pixels per axis unit, pixel of 0) from the x-axis tick labels the chart drew."""
    ticks = page.evaluate("""() => [...document.querySelectorAll(
        "g[aria-label='x-axis tick label'] text")].map(t => {
          const m = /translate\\(([-\\d.]+)/.exec(t.getAttribute("transform")
                    || t.parentNode.getAttribute("transform") || "");
          return [parseFloat(t.textContent), m ? parseFloat(m[1]) : NaN];
        })""")
    placed = [(value, x) for value, x in ticks if x == x]  # NaN-free
    assert len(placed) >= 2, f"axis ticks not found: {ticks}"
    (v0, x0), (v1, x1) = placed[0], placed[-1]
    scale = (x1 - x0) / (v1 - v0)
    return scale, x0 - v0 * scale


def _points(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate("""() => [...document.querySelectorAll('.point')].map(p => {
        const box = p.getBBox();
        const m = /translate\\(([-\\d.]+)/.exec(p.getAttribute('transform') || '');
        const cx = p.hasAttribute('cx') ? parseFloat(p.getAttribute('cx'))
                 : (m ? parseFloat(m[1]) : box.x + box.width / 2);
        return {lane: p.dataset.lane, label: p.getAttribute('aria-label'), cx,
                counted: p.classList.contains('counted'), tabindex: p.getAttribute('tabindex')};
    })"""))


def _age_months(birth: str, onset: str) -> float:
    return (dt.date.fromisoformat(onset) - dt.date.fromisoformat(birth)).days / DAYS_PER_MONTH


def test_the_classic_triad_is_drawn_with_its_criteria_at_their_ages(world: World) -> None:
    scenario = load_scenario(CLASSIC)
    page, pid = _open(world, scenario)
    shot = _shot(world, page, "classic-infant-boy-triad")
    text = page.inner_text("#timeline")
    assert "High likelihood (rule 1)" in text
    assert "Criteria met: ENT, ENDO-DM, DERM." in text
    assert "FOXP3 gene sequencing" in text
    assert "rule set 2.0.0 of 2026-11-30" in text
    # The three criteria, each a counted point in its lane, at its age at onset.
    birth = "2025-01-10"
    onsets = {"ENT": "2025-03-02", "ENDO-DM": "2025-04-10", "DERM": "2025-05-01"}
    points = {p["lane"]: p for p in _points(page)}
    assert set(points) == set(onsets)
    per_unit, zero = _x_axis(page)
    for lane, onset in onsets.items():
        point = points[lane]
        assert point["counted"], lane
        expected = zero + _age_months(birth, onset) * per_unit  # axis in months under 2 years
        assert abs(point["cx"] - expected) < 3, f"{lane}: x {point['cx']} != {expected:.1f}"
        assert f"onset {onset}" in point["label"]
    assert "age 1 month" in points["ENT"]["label"]
    assert "age 3 months" in points["ENDO-DM"]["label"]
    # Record text is text, never markup: the display "Atopic dermatitis <script>".
    assert "Atopic dermatitis <script>" in points["DERM"]["label"]
    assert page.evaluate("document.querySelectorAll('#timeline script').length") == 0
    # The age limits of row 1 are shaded on each criterion's lane.
    bands = page.evaluate("[...document.querySelectorAll(\"g[aria-description='age window'] "
                          "> *\")].map(b => b.getAttribute('aria-label'))")
    assert sorted(bands) == sorted(f"Rule 1: {c} with onset before 18 years"
                                   for c in ("ENT", "ENDO-DM", "ENDO-THY", "DERM"))
    _no_sideways_scroll(page)
    assert _storage(page) == [0, 0], "no token or patient data left in the browser"
    # What the app sent: PKCE checked by the EHR, every read with the granted token.
    assert world.ehr.pkce_verified, "the token exchange carried a verifier matching the challenge"
    authorize = [s for s in world.ehr.sent if s.path == "/auth/authorize"][-1]
    assert authorize.query["scope"] == SCOPE and authorize.query["client_id"] == CLIENT_ID
    reads = [s for s in world.ehr.reads() if s.query.get("patient", pid) == pid]
    assert {s.path for s in reads} >= {f"/fhir/Patient/{pid}", "/fhir/Condition",
                                       "/fhir/Observation", "/fhir/ServiceRequest"}
    assert all(s.bearer in world.ehr.tokens for s in reads)
    # Conditions come two a page: the app followed the next link.
    assert any(s.path == "/fhir/Condition" and s.query.get("_page") == "2" for s in reads)
    assert shot.stat().st_size > 10_000
    page.context.close()


def test_the_timeline_works_with_the_keyboard_and_passes_axe(world: World) -> None:
    page, _ = _open(world, load_scenario(CLASSIC), context_options={"bypass_csp": True})
    page.add_script_tag(path=str(AXE))  # bypass_csp: only so the test can inject axe
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a',
                                                     'wcag21aa', 'best-practice']});
        return r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' '));
    }""")
    assert result == [], result
    # Every point is reachable with Tab, and focusing one reads it out in the detail line.
    labels = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
        if page.evaluate("document.activeElement.classList.contains('point')"):
            labels.add(focused)
            assert page.inner_text("#point-detail") == focused
    assert len(labels) == 3, labels
    page.context.close()


def test_a_girl_with_the_triad_gets_the_gene_panel(world: World) -> None:
    page, _ = _open(world, load_scenario(GIRL))
    _shot(world, page, "girl-classic-triad")
    text = page.inner_text("#timeline")
    assert "High likelihood (rule 1)" in text
    assert "sex female" in text
    assert "panel" in text and "IPEX-like" in text
    assert {p["lane"] for p in _points(page)} == {"ENT", "ENDO-DM", "DERM"}
    _no_sideways_scroll(page)
    page.context.close()


def test_a_low_risk_child_shows_no_criteria_met(world: World) -> None:
    page, _ = _open(world, load_scenario(LOW_RISK))
    _shot(world, page, "low-risk-toddler")
    text = page.inner_text("#timeline")
    assert "Low likelihood (rule 10)" in text
    assert "No criteria met." in text
    assert "No test recommended" in text
    assert "lasted 5 days" in page.inner_text("#not-counted + *"), "why the diarrhea did not count"
    assert all(not p["counted"] for p in _points(page))
    _no_sideways_scroll(page)
    assert _storage(page) == [0, 0]
    page.context.close()


def test_a_refused_authorization_shows_a_clear_message_and_no_data(world: World) -> None:
    before = len(world.ehr.reads())
    page, _ = _open(world, load_scenario(CLASSIC), refuse=True)
    _shot(world, page, "refused-authorization")
    message = page.inner_text("#problem")
    assert "did not authorize" in message and "access_denied" in message
    assert "No patient data was read." in message
    assert page.evaluate("document.getElementById('timeline').children.length") == 0
    assert page.is_hidden("#timeline")
    assert len(world.ehr.reads()) == before, "no FHIR read without a token"
    assert _storage(page) == [0, 0]
    page.context.close()

