"""The card a clinician sees, made from the same ScreeningResult as the RiskAssessment.

No card for tier low or a suppressed patient. Otherwise one card: indicator
``warning`` (high) or ``info`` (moderate), a summary under 140 characters, a
markdown table of the criteria met and their evidence (text from the record is
escaped for markdown and HTML), one suggestion creating a draft ServiceRequest for
the recommended test, override reasons, and three links: GeneReviews, the evidence
timeline (a SMART app link the EHR launches, its ``appContext`` the screening date and
row so the app draws what the card said) and the rule set's source attributes.
"""

from __future__ import annotations

import json
import re
import uuid
from html import escape
from typing import Any

from ..screening import (
    Evidence,
    RuleSet,
    ScreeningResult,
    explained_text,
    notes,
    table_rows,
)

INDICATOR = {"high": "warning", "moderate": "info"}
SUMMARY_LIMIT = 140
GENEREVIEWS = {
    "label": "GeneReviews: IPEX syndrome (NBK1118)",
    "url": "https://www.ncbi.nlm.nih.gov/books/NBK1118/",
    "type": "absolute",
}
TIMELINE_LAUNCH_PATH = "/timeline/launch.html"
SOURCE_ATTRIBUTES_PATH = "/source-attributes"
OVERRIDE_SYSTEM = "https://ipex-screen.org/fhir/CodeSystem/cds-override-reason"
OVERRIDE_REASONS = (
    ("already-tested", "Genetic testing for IPEX is already done or ordered elsewhere"),
    ("alternative-diagnosis", "Another diagnosis explains these findings"),
    ("record-inaccurate", "The coded record is inaccurate or incomplete"),
    ("under-specialist-care", "Already under paediatric immunology care"),
    ("family-declined", "The patient or family declined testing"),
)
# GitHub Flavored Markdown: any ASCII punctuation may be backslash-escaped; these are
# the ones that can start emphasis, links, code, tables, headings or HTML.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~^$])")


def markdown_text(text: str) -> str:
    """Record text made inert in markdown and HTML, on one line."""
    flat = " ".join(text.split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escape(flat, quote=False))


def _subject_words(result: ScreeningResult) -> str:
    assert result.recommendation is not None
    return result.recommendation.outcome_text


def summary(result: ScreeningResult) -> str:
    """One line under 140 characters: what is suspected, how likely, what to order."""
    assert result.recommendation is not None
    text = (f"Possible {_subject_words(result)} ({result.tier} likelihood, rule "
            f"{result.row.row}): consider {result.recommendation.test_name}")
    if len(text) >= SUMMARY_LIMIT:
        text = text[: SUMMARY_LIMIT - 2].rstrip() + "…"
    return text


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _evidence_cells(label: str, evidence: Evidence) -> list[str]:
    what = evidence.description + (f" ({evidence.detail})" if evidence.detail else "")
    return [
        markdown_text(label),
        markdown_text(what),
        markdown_text(evidence.code_label),
        markdown_text(evidence.when),
        markdown_text(evidence.age_at_onset),
    ]


def detail(result: ScreeningResult) -> str:
    """Markdown: the rule that set the tier, the evidence table, the recommendation."""
    row = result.row
    lines = [
        f"**IPEX screening: {row.tier} likelihood** (rule {row.row}: "
        f"{markdown_text(row.rule)}; IPEX screening rules v{markdown_text(result.rules_version)};"
        f" screened as of {result.as_of.isoformat()})",
        "",
        _row(["Criterion met", "Evidence", "Code", "Onset", "Age at onset"]),
        _row(["---"] * 5),
    ]
    findings = result.findings
    for label, evidence in table_rows(findings, result.counted_supporting):
        lines.append(_row(_evidence_cells(label, evidence)))
    if findings.explained:
        lines += ["", "Found, not counted:", ""]
        lines += [f"- {markdown_text(explained_text(e))}" for e in findings.explained]
    if findings.shown:
        lines += ["", "Also shown, not scored:", "",
                  _row(["Result", "Code", "Date", "Age"]), _row(["---"] * 4)]
        for shown in findings.shown:
            what = shown.description + (f" ({shown.detail})" if shown.detail else "")
            lines.append(_row([markdown_text(what), markdown_text(shown.code_label),
                               markdown_text(shown.when), markdown_text(shown.age_at_onset)]))
    assert result.mitigation is not None
    lines += ["", f"**Recommendation:** {markdown_text(result.mitigation)}"]
    for note in notes(result):
        lines += ["", f"- {markdown_text(note)}"]
    return "\n".join(lines)


def order_resource(result: ScreeningResult, *, patient_id: str,
                   order_code: tuple[str, str, str] | None) -> dict[str, Any]:
    """The draft FHIR R4 ServiceRequest the suggestion creates."""
    recommendation = result.recommendation
    assert recommendation is not None
    code: dict[str, Any] = {"text": recommendation.test_name}
    if order_code is not None and recommendation.uses_order_code:
        system, value, display = order_code
        coding = {"system": system, "code": value}
        if display:
            coding["display"] = display
        code = {"coding": [coding], "text": recommendation.test_name}
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [{"text": "Genetic testing"}],
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{
            "text": f"Suspected {_subject_words(result)} (IPEX screening: {result.tier} "
                    f"likelihood, rule {result.row.row}, recommendation "
                    f"{recommendation.kind})"
        }],
        "note": [{"text": result.mitigation or recommendation.mitigation}],
    }


def links(result: ScreeningResult, rules: RuleSet, *, base_url: str) -> list[dict[str, Any]]:
    """GeneReviews, the timeline app (SMART) and the source attributes, under ``base_url``."""
    base = base_url.rstrip("/")
    app_context = {"asOf": result.as_of.isoformat(), "rulesVersion": rules.version,
                   "row": result.row.row}
    return [
        dict(GENEREVIEWS),
        {"label": "Evidence timeline: the criteria along the child's age",
         "url": base + TIMELINE_LAUNCH_PATH, "type": "smart",
         "appContext": json.dumps(app_context, separators=(",", ":"))},
        {"label": f"Source attributes of this decision support (rules v{rules.version})",
         "url": base + SOURCE_ATTRIBUTES_PATH, "type": "absolute"},
    ]


def card(result: ScreeningResult, rules: RuleSet, *, patient_id: str,
         order_code: tuple[str, str, str] | None, base_url: str) -> dict[str, Any] | None:
    """The card for one screened patient, or None (tier low, or testing suppressed).

    ``base_url`` is where EHRs reach this service (its links point there).
    """
    if result.recommendation is None or result.suppressed or result.tier not in INDICATOR:
        return None
    test_name = result.recommendation.test_name
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary(result),
        "indicator": INDICATOR[result.tier],
        "detail": detail(result),
        "source": {"label": f"{rules.title} (v{rules.version})", "url": rules.url},
        "suggestions": [{
            "label": f"Order {test_name}",
            "uuid": str(uuid.uuid4()),
            "isRecommended": True,
            "actions": [{
                "type": "create",
                "description": f"Create a draft order for {test_name}",
                "resource": order_resource(result, patient_id=patient_id,
                                           order_code=order_code),
            }],
        }],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ],
        "links": links(result, rules, base_url=base_url),
    }
