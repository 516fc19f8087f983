"""``ipex-screen feedback-report`` on a state store the test fills, on both back ends.

The store is filled through its interface with cards shown (tier, row) and feedback
(accepted, overridden with reasons, one free-text comment holding a made-up patient's
name); the report must count them right, show no card id and no comment, and its plots
must load in Chromium with the network cut off.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from service import cli
from service.config import load_settings
from service.reports.feedback import summarize
from service.state import CardRow, FeedbackRow, StateStore, open_store

from .browser import headless_chromium

MONDAY = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)  # ISO week 2026-W45
COMMENT = "Mother of Jonah Testpatient says the diarrhea stopped"
OVERRIDE = "https://ipex-screen.org/fhir/CodeSystem/cds-override-reason"


def _card(card: str, day: int, tier: str, row: int, kind: str | None) -> CardRow:
    return CardRow(card=card, issued_at=MONDAY + dt.timedelta(days=day), tier=tier, row=row,
                   recommendation=kind, rules_version="2.0.0")


def _answer(card: str, day: int, outcome: str, *, code: str | None = None,
            display: str | None = None, comment: str | None = None) -> FeedbackRow:
    moment = MONDAY + dt.timedelta(days=day, hours=2)
    return FeedbackRow(card=card, outcome=outcome, outcome_timestamp=moment,
                       accepted_suggestions=("s-1",) if outcome == "accepted" else None,
                       override_system=OVERRIDE if code else None, override_code=code,
                       override_display=display, user_comment=comment, received_at=moment)


CARDS = [
    _card("card-a", 0, "high", 1, "IPEX"),
    _card("card-b", 1, "high", 1, "IPEX"),
    _card("card-c", 2, "moderate", 5, "NDM"),
    _card("card-d", 8, "moderate", 4, "IPEX"),     # week 46
    _card("card-e", 15, "high", 2, "IPEX"),        # week 47, never answered
]
ANSWERS = [
    _answer("card-a", 0, "accepted"),
    _answer("card-b", 1, "overridden", code="already-tested",
            display="Genetic testing for IPEX is already done or ordered elsewhere",
            comment=COMMENT),
    _answer("card-c", 9, "overridden", code="alternative-diagnosis",
            display="Another diagnosis explains these findings"),
    _answer("card-d", 8, "overridden", code="alternative-diagnosis",
            display="Another diagnosis explains these findings"),
    _answer("card-d", 10, "accepted"),              # changed their mind: both outcomes
    _answer("card-z", 9, "overridden"),             # a card the store never recorded
]


def _filled(store: StateStore) -> StateStore:
    store.add_cards(CARDS)
    store.add_feedback(ANSWERS)
    return store


def test_the_counts_are_the_cards_and_answers_stored(tmp_path: Path) -> None:
    store = _filled(open_store(load_settings(state_db=str(tmp_path / "s.sqlite3"))))
    summary = summarize(store.card_rows(), store.feedback_rows())
    assert (summary.shown, summary.answered, summary.accepted, summary.overridden) == (5, 5, 2, 4)
    weeks = {w.week.label: (w.shown, w.answered, w.accepted, w.overridden)
             for w in summary.weeks}
    assert weeks == {"2026-W45": (3, 2, 1, 1), "2026-W46": (1, 3, 1, 3),
                     "2026-W47": (1, 0, 0, 0)}
    rows = {r.label: (r.shown, r.accepted, r.overridden, r.unanswered) for r in summary.rows}
    assert rows == {"Row 1 (high, IPEX)": (2, 1, 1, 0), "Row 2 (high, IPEX)": (1, 0, 0, 1),
                    "Row 4 (moderate, IPEX)": (1, 1, 1, 0),
                    "Row 5 (moderate, NDM)": (1, 0, 1, 0), "card not recorded": (0, 0, 1, 0)}
    assert summary.override_reasons == [("Another diagnosis explains these findings", 2),
                                        ("Genetic testing for IPEX is already done or ordered "
                                         "elsewhere", 1), ("no reason given", 1)]
    later = summarize(store.card_rows(), store.feedback_rows(), since=dt.date(2026, 11, 9))
    assert (later.shown, later.accepted, later.overridden) == (2, 1, 3)


@pytest.fixture(params=["sqlite", "postgresql"])
def filled_store_env(request: pytest.FixtureRequest, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A filled store, and the environment that names it for the command."""
    for name in ("IPEX_STATE_DB", "IPEX_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "sqlite":
        path = str(tmp_path / "state.sqlite3")
        monkeypatch.setenv("IPEX_STATE_DB", path)
        settings = load_settings(state_db=path)
    else:
        url: str = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("IPEX_STATE_URL", url)
        settings = load_settings(state_url=url)
    store = _filled(open_store(settings))
    store.close()
    return {"kind": request.param}


def test_the_command_writes_a_report_of_counts_without_patient_data(
        filled_store_env: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    assert cli.main(["feedback-report", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert filled_store_env["kind"] in html
    assert "<tr><th scope=\"row\">Cards shown</th><td>5</td></tr>" in html
    assert "<tr><th scope=\"row\">Overridden</th><td>4</td></tr>" in html
    assert "<th scope=\"row\">Row 1 (high, IPEX)</th><td>2</td><td>1</td><td>1</td>" in html
    assert "2026-W45" in html and "2026-W47" in html
    assert "Another diagnosis explains these findings" in html
    for secret in ("Jonah", "Testpatient", "card-a", "card-z", "s-1"):
        assert secret not in html, f"{secret!r} must not be in the report"
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    assert "http://" not in html and "https://" not in html.replace(OVERRIDE, "")


def test_the_report_s_plots_load_offline_in_chromium(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "state.sqlite3")
    monkeypatch.setenv("IPEX_STATE_DB", path)
    monkeypatch.delenv("IPEX_STATE_URL", raising=False)
    _filled(open_store(load_settings(state_db=path)))
    out = tmp_path / "report.html"
    assert cli.main(["feedback-report", "--out", str(out)]) == 0
    requested: list[str] = []
    with headless_chromium() as browser:
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("request", lambda r: requested.append(r.url))
        page.goto(out.as_uri())
        images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, "
                               "i.naturalHeight, i.alt.length])")
        page.screenshot(path=str(tmp_path / "feedback-report.png"), full_page=True)
        context.close()
    assert len(images) == 3
    for complete, width, height, alt in images:
        assert complete and width > 300 and height > 100 and alt > 20
    assert all(url.startswith(("file://", "data:")) for url in requested), requested


def test_no_store_is_a_clear_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IPEX_STATE_DB", str(tmp_path / "missing.sqlite3"))
    monkeypatch.delenv("IPEX_STATE_URL", raising=False)
    assert cli.main(["feedback-report", "--out", str(tmp_path / "r.html")]) == 1
    assert "no state store at" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite3").exists() and not (tmp_path / "r.html").exists()
