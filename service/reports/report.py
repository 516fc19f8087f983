"""``ipex-screen feedback-report``: the HTML report of CDS card feedback.

Reads the configured state store (``IPEX_STATE_URL``, else the ``IPEX_STATE_DB`` file)
through its interface, counts (:mod:`.feedback`), draws (:mod:`.plots`) and writes one
self-contained HTML file: the plots are embedded, every number is also in a table, and
nothing in it names or describes a patient.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape

from ..state import StateStore
from . import plots
from .feedback import FeedbackSummary, summarize


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("service.reports", "templates"),
                       autoescape=select_autoescape(["html"]))


def render_report(summary: FeedbackSummary, *, store: str, generated_at: dt.datetime,
                  since: dt.date | None) -> str:
    """The report's HTML for a summary (``store`` names it: a path or a password-free URL)."""
    return _environment().get_template("feedback-report.html").render(
        summary=summary, store=store, since=since,
        generated_at=generated_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        weekly=plots.weekly(summary), reasons=plots.reasons(summary),
        by_row=plots.by_row(summary))


def feedback_report(store: StateStore, *, generated_at: dt.datetime,
                    since: dt.date | None = None) -> str:
    """Read the store and render the report (raises StateUnavailable when it cannot)."""
    summary = summarize(store.card_rows(), store.feedback_rows(), since=since)
    return render_report(summary, store=f"{store.kind} {store.where}",
                         generated_at=generated_at, since=since)
