"""``report.html``: the population summary as tables and plots, readable offline.

The plots are PNGs drawn with matplotlib's Agg renderer (no display, no pyplot
global state) and embedded as ``data:`` URIs: the file needs no network, no CDN
and no script. It is built from ``summary.json`` alone, so it holds no patient data.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

LISTED_IN_REPORT = 100
_TIER_COLOURS = {"high": "#c0392b", "moderate": "#e67e22", "low": "#7f8c8d"}
_BAR = "#2c6e9b"


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    # No "Software" stamp and a fixed dpi: the same summary gives the same bytes.
    fig.savefig(buffer, format="png", dpi=96, metadata={"Software": None},
                bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def bar_chart(counts: Mapping[str, int], *, title: str, xlabel: str,
              colours: Mapping[str, str] | None = None, horizontal: bool = False,
              empty: str = "none") -> str:
    labels = list(counts)
    values = [counts[k] for k in labels]
    height = max(2.6, 0.32 * len(labels) + 1.2) if horizontal else 3.0
    fig = Figure(figsize=(7.5, height))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    if not labels or not any(values):
        _empty(ax, empty)
        return _png(fig)
    colour = [(colours or {}).get(k, _BAR) for k in labels]
    if horizontal:
        shown = [k if len(k) <= 70 else k[:67] + "..." for k in labels]
        ax.barh(range(len(values)), values, color=colour)
        ax.set_yticks(range(len(values)), shown, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
    else:
        ax.bar(range(len(values)), values, color=colour)
        ax.set_xticks(range(len(values)), labels)
        ax.set_ylabel(xlabel)
    return _png(fig)


def ages_chart(ages: Mapping[str, Sequence[float]]) -> str:
    """Each flagged child's age at onset of each criterion met, one row per criterion."""
    fig = Figure(figsize=(7.5, max(2.6, 0.5 * len(ages) + 1.2)))
    ax = fig.add_subplot()
    ax.set_title("Age at which flagged children met each criterion", fontsize=11)
    if not ages:
        _empty(ax, "no flagged children")
        return _png(fig)
    for row, values in enumerate(ages.values()):
        # A fixed spread instead of random jitter keeps the picture identical run to run.
        spread = 0.06 if len(values) > 1 else 0.0
        offsets = [row + ((i % 7) - 3) * spread for i in range(len(values))]
        ax.scatter(values, offsets, s=14, alpha=0.7, color=_BAR)
        if len(values) >= 5:
            ax.boxplot([list(values)], positions=[row], orientation="horizontal", widths=0.5,
                       showfliers=False)
    ax.set_yticks(range(len(ages)), list(ages))
    ax.invert_yaxis()
    ax.set_xlabel("age at onset (months)")
    ax.set_xlim(left=0)
    return _png(fig)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(png: str, alt: str) -> str:
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{png}"></figure>'


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;
text-align:left;font-size:.9rem}th{background:#f2f2f2}figure{margin:1rem 0}img{max-width:100%}
.note{color:#555;font-size:.9rem}
"""


def render(summary: Mapping[str, Any]) -> str:
    patients = summary["patients"]
    unusable = summary["unusable"]
    not_read = summary["notRead"]
    ages = summary["criterionAgesMonths"]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>IPEX population screening report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>IPEX population screening</h1>",
        f"<p>Screened as of <b>{escape(summary['asOf'])}</b> with "
        f"{escape(summary['rules']['id'])} version {escape(summary['rules']['version'])}. "
        f"Export files: {escape(', '.join(summary['files']))}.</p>",
        _table([
            ("patients in the export", patients["inExport"]),
            ("screened", patients["screened"]),
            ("not screened (see unusable lines)", patients["notScreened"]),
            ("flagged: testing recommended", patients["flagged"]),
            ("suppressed (already diagnosed or tested)", patients["suppressed"]),
            ("screened with something in the record not read",
             patients["withSomethingNotRead"]),
            ("unusable lines", unusable["total"]),
            ("export error issues (OperationOutcome)", summary["exportErrors"]["issues"]),
        ], ("", "count")),
        "<h2>Tiers</h2>",
        _figure(bar_chart(summary["tiers"], title="Patients per tier", xlabel="patients",
                          colours=_TIER_COLOURS), "bar chart of patients per tier"),
        _table(list(summary["tiers"].items()), ("tier", "patients")),
        "<h2>Tier rows</h2>",
        "<p class=\"note\">The row of the rules' tier table that set each patient's tier.</p>",
        _figure(bar_chart({f"row {k}": v for k, v in summary["rows"].items()},
                          title="Patients per tier row", xlabel="patients"),
                "bar chart of patients per tier row"),
        _table([(k, v) for k, v in summary["rows"].items()], ("row", "patients")),
        "<h2>Flagged children: age at each criterion</h2>",
        _figure(ages_chart(ages), "ages at onset of each criterion among flagged children"),
        _table([(k, len(v), f"{min(v):.1f}", f"{max(v):.1f}") for k, v in ages.items()],
               ("criterion", "children", "youngest (months)", "oldest (months)")),
        "<h2>What was not read</h2>",
        "<p class=\"note\">Data quality: what in the records could have changed a result "
        "but could not be read, by reason (numbers masked), and where.</p>",
        _figure(bar_chart(dict(list(not_read["byReason"].items())[:15]),
                          title="Not read, by reason (top 15)", xlabel="entries",
                          horizontal=True, empty="everything was read"),
                "bar chart of what was not read, by reason"),
        _table(list(not_read["byReason"].items()), ("reason", "entries")),
        _table([(p["file"], p["line"], p["where"], p["reason"])
                for p in not_read["listed"][:LISTED_IN_REPORT]],
               ("file", "line", "where", "reason")) if not_read["listed"] else "",
        _table(list(summary["resourcesNotRead"].items()), ("resource type not read", "lines"))
        if summary["resourcesNotRead"] else "",
        "<p class=\"note\">Not a data-quality problem: resources coded with nothing the "
        "rules use (vital signs, routine labs, other diagnoses), passed over.</p>",
        _table(list(summary["resourcesCodedNotUsed"].items()),
               ("coded, not used by the rules", "lines"))
        if summary["resourcesCodedNotUsed"] else "",
        "<h2>Looked at, not counted</h2>",
        "<p class=\"note\">Evidence the rules read and set aside, by reason.</p>",
        _table(list(summary["notCounted"].items()), ("reason", "entries")),
        "<h2>Unusable lines</h2>",
        _figure(bar_chart(unusable["byKind"], title="Unusable lines and patients, by kind",
                          xlabel="count", horizontal=True, empty="no unusable lines"),
                "bar chart of unusable lines by kind"),
        _table([(p["file"], p["line"], p["kind"], p["reason"])
                for p in unusable["listed"][:LISTED_IN_REPORT]],
               ("file", "line", "kind", "reason")),
        f"<p class=\"note\">{len(unusable['listed'][:LISTED_IN_REPORT])} of "
        f"{unusable['total']} listed here; summary.json lists up to "
        f"{len(unusable['listed'])}.</p>",
        "</body></html>\n",
    ]
    return "".join(parts)


def write_report(path: Path, summary: Mapping[str, Any]) -> None:
    path.write_text(render(summary), encoding="utf-8")
