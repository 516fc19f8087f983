"""The report's plots: matplotlib figures as PNG ``data:`` URLs, so the page loads offline.

Figures are made with the object API (``matplotlib.figure.Figure``, the Agg canvas),
never pyplot: no global state, nothing shown on a screen.
"""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .feedback import FeedbackSummary

ACCEPTED = "#1f4e9c"
OVERRIDDEN = "#b35c00"
SHOWN = "#595959"
UNANSWERED = "#c7ccd4"


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight",
                   metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def weekly(summary: FeedbackSummary) -> str:
    """Cards shown and answered, and the answers (accepted, overridden), per week."""
    labels = [w.week.label for w in summary.weeks]
    x = range(len(labels))
    figure = Figure(figsize=(10, 4.2))
    shown_axes, answers_axes = figure.subplots(1, 2)
    width = 0.4
    shown_axes.bar([i - width / 2 for i in x], [w.shown for w in summary.weeks], width,
                   label="cards shown", color=SHOWN)
    shown_axes.bar([i + width / 2 for i in x], [w.answered for w in summary.weeks], width,
                   label="cards answered", color=ACCEPTED)
    shown_axes.set_title("Cards shown and answered per week")
    accepted = [w.accepted for w in summary.weeks]
    answers_axes.bar(x, accepted, 0.6, label="accepted", color=ACCEPTED)
    answers_axes.bar(x, [w.overridden for w in summary.weeks], 0.6, bottom=accepted,
                     label="overridden", color=OVERRIDDEN)
    answers_axes.set_title("Answers per week: accepted and overridden")
    for axes in (shown_axes, answers_axes):
        axes.set_xticks(list(x), labels, rotation=45, ha="right")
        axes.set_ylabel("count")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(frameon=False)
    figure.tight_layout()
    return _png(figure)


def reasons(summary: FeedbackSummary) -> str:
    """Override reasons, most frequent first."""
    found = summary.override_reasons or [("no card was overridden", 0)]
    names = [name for name, _ in found][::-1]
    figure = Figure(figsize=(10, 0.6 * len(found) + 1.4))
    axes = figure.subplots()
    axes.barh(names, [count for _, count in found][::-1], color=OVERRIDDEN)
    axes.set_title("Override reasons")
    axes.set_xlabel("overridden cards")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return _png(figure)


def by_row(summary: FeedbackSummary) -> str:
    """Per tier row: accepted, overridden and not answered."""
    rows = summary.rows[::-1] or []
    labels = [r.label for r in rows] or ["no card shown"]
    accepted = [r.accepted for r in rows] or [0]
    overridden = [r.overridden for r in rows] or [0]
    unanswered = [r.unanswered for r in rows] or [0]
    figure = Figure(figsize=(10, 0.6 * len(labels) + 1.6))
    axes = figure.subplots()
    axes.barh(labels, accepted, color=ACCEPTED, label="accepted")
    axes.barh(labels, overridden, left=accepted, color=OVERRIDDEN, label="overridden")
    axes.barh(labels, unanswered, left=[a + o for a, o in zip(accepted, overridden, strict=True)],
              color=UNANSWERED, label="shown, not answered")
    axes.set_title("By tier and rule row")
    axes.set_xlabel("answers, and cards shown but not answered")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(frameon=False, loc="lower right")
    figure.tight_layout()
    return _png(figure)
