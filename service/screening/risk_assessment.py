"""The RiskAssessment a clinician reads: tier, criteria met with evidence, what to do.

Shape fixed by the contract: status final, the project's profile, method naming
the rule set and version, one prediction (outcome, qualitativeRisk, rationale),
basis referencing every contributing resource, mitigation exactly when testing is
recommended, a note when suppressed, and a narrative table. Text from the record
is escaped in the XHTML.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from .findings import CategoryFinding, Evidence
from .result import ScreeningResult
from .ruleset import RuleSet

PROFILE = "https://ipex-screen.org/fhir/StructureDefinition/ipex-risk-assessment"
METHOD_SYSTEM = "https://ipex-screen.org/fhir/CodeSystem/ipex-screening-method"
RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
RISK_DISPLAY = {
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
}
IPEX_LIKE_TEXT = "IPEX-like immune dysregulation"


def _evidence_text(evidence: Evidence, *, dated: str = "onset ") -> str:
    onset = f"{dated}{evidence.when}, age {evidence.age_at_onset}"
    detail = f"; {evidence.detail}" if evidence.detail else ""
    return f"{evidence.description} [{evidence.code_label}] ({onset}{detail})"


def _finding_line(finding: CategoryFinding) -> str:
    category = finding.category
    items = "; ".join(_evidence_text(e) for e in sorted(finding.evidence,
                                                         key=lambda e: e.onset_bound))
    return f"{category.id} ({category.display}): {items}"


def rationale(result: ScreeningResult) -> str:
    """The criteria met with ages at onset, then the rule that set the tier."""
    findings = result.findings
    lines = [_finding_line(f) for f in findings.criteria.values()]
    counted = [f for k, f in findings.supporting.items() if k in result.counted_supporting]
    late = [f for k, f in findings.supporting.items() if k not in result.counted_supporting]
    if counted:
        lines.append("Supporting features: " + "; ".join(_finding_line(f) for f in counted))
    if late:
        lines.append("Also found, not counted as supporting features (they began at 24 months "
                     "or later, or the age at onset is unknown): "
                     + "; ".join(_finding_line(f) for f in late))
    if not lines:
        lines.append("No triad criterion or supporting feature was found in the record.")
    if findings.shown:
        lines.append("Also shown, not scored: " + "; ".join(
            _evidence_text(e, dated="") for e in findings.shown))
    row = result.decision.row
    if row.tier == "low":
        lines.append(f"Tier low: no higher rule of the IPEX screening rules "
                     f"v{result.rules_version} is met.")
    else:
        lines.append(f"Tier {row.tier} by rule {row.row} of the IPEX screening rules "
                     f"v{result.rules_version}: {row.rule}.")
    return "\n".join(lines)


def notes(result: ScreeningResult) -> list[str]:
    found = []
    findings = result.findings
    for suppression in findings.suppression:
        found.append(f"No test recommended: {suppression.reason}.")
    if findings.foxp3_negative is not None:
        negative = findings.foxp3_negative
        found.append(
            f"FOXP3 testing was negative ({negative.when}): the recommendation is the "
            "IPEX-like gene panel, not FOXP3."
        )
    if result.patient.birth_date is None:
        found.append(
            "The Patient has no birthDate, so no age at onset can be computed and no "
            "tier above low can be reached: record the birth date and screen again."
        )
    if result.patient.sex != "male" and result.recommendation is not None:
        found.append(
            "IPEX is X-linked; sex assigned at birth is "
            f"{'female' if result.patient.sex == 'female' else 'not recorded'}, "
            "so an IPEX-like gene panel is recommended."
        )
    return found


def _outcome(result: ScreeningResult, rules: RuleSet) -> dict[str, Any]:
    if result.patient.sex == "male" and result.findings.foxp3_negative is None:
        male = rules.recommendations["male"]
        outcome: dict[str, Any] = {"text": male.outcome_text}
        if male.outcome_coding:
            outcome["coding"] = [dict(male.outcome_coding)]
        return outcome
    return {"text": IPEX_LIKE_TEXT}


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def narrative(result: ScreeningResult) -> str:
    """A small XHTML table of the same content, for any FHIR viewer."""
    rows = []
    for finding in (*result.findings.criteria.values(), *result.findings.supporting.values()):
        late = finding.category.kind == "supporting" and (
            finding.category.id not in result.counted_supporting)
        for evidence in finding.evidence:
            rows.append(_row([
                f"{finding.category.id}: {finding.category.display}"
                + (" (not counted: began at 24 months or later)" if late else ""),
                evidence.description + (f" ({evidence.detail})" if evidence.detail else ""),
                evidence.code_label,
                evidence.when,
                evidence.age_at_onset,
            ]))
    table = (
        "<table><thead><tr><th>Criterion</th><th>Evidence</th><th>Code</th><th>Onset</th>"
        "<th>Age at onset</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="5">No criterion or feature found</td></tr>')
        + "</tbody></table>"
    )
    row = result.decision.row
    if result.findings.shown:
        shown_rows = "".join(
            _row([e.description + (f" ({e.detail})" if e.detail else ""), e.code_label, e.when,
                  e.age_at_onset])
            for e in result.findings.shown
        )
        table += (
            "<p>Also shown, not scored:</p><table><thead><tr><th>Result</th><th>Code</th>"
            "<th>Date</th><th>Age</th></tr></thead><tbody>" + shown_rows + "</tbody></table>"
        )
    parts = [
        f"<p><b>IPEX screening: {escape(row.tier)} likelihood</b> "
        f"(rule {row.row}: {escape(row.rule)}; rule set v{escape(result.rules_version)}; "
        f"screened as of {result.as_of.isoformat()})</p>",
        table,
    ]
    if result.recommendation is not None:
        parts.append(f"<p><b>Recommendation:</b> {escape(result.recommendation.mitigation)}</p>")
    for note in notes(result):
        parts.append(f"<p>{escape(note)}</p>")
    return '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(parts) + "</div>"


def risk_assessment(
    result: ScreeningResult,
    rules: RuleSet,
    *,
    computed_at: dt.datetime,
    resource_id: str | None = None,
) -> dict[str, Any]:
    """Build the RiskAssessment resource (a plain dict, FHIR R4 JSON) for one result."""
    tier = result.tier
    resource: dict[str, Any] = {"resourceType": "RiskAssessment"}
    if resource_id:
        resource["id"] = resource_id
    resource["meta"] = {"profile": [PROFILE]}
    resource["text"] = {"status": "generated", "div": narrative(result)}
    resource["status"] = "final"
    resource["subject"] = {"reference": result.patient.reference}
    resource["occurrenceDateTime"] = computed_at.isoformat(timespec="seconds")
    resource["method"] = {
        "coding": [{
            "system": METHOD_SYSTEM,
            "version": rules.version,
            "code": rules.id,
            "display": rules.title,
        }],
        "text": f"{rules.title} (rule set version {rules.version}), screened as of "
                f"{result.as_of.isoformat()}",
    }
    basis = result.basis
    if basis:
        resource["basis"] = [{"reference": ref} for ref in basis]
    resource["prediction"] = [{
        "outcome": _outcome(result, rules),
        "qualitativeRisk": {
            "coding": [{"system": RISK_SYSTEM, "code": tier, "display": RISK_DISPLAY[tier]}]
        },
        "rationale": rationale(result),
    }]
    if result.recommendation is not None:
        resource["mitigation"] = result.recommendation.mitigation
    found_notes = notes(result)
    if found_notes:
        resource["note"] = [{"text": text} for text in found_notes]
    return resource
