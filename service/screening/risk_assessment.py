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

from .evidence import CategoryFinding, Evidence, ExplainedEvidence, Findings
from .result import ScreeningResult
from .ruleset import RuleSet

PROFILE = "https://ipex-screen.org/fhir/StructureDefinition/ipex-risk-assessment"
METHOD_SYSTEM = "https://ipex-screen.org/fhir/CodeSystem/ipex-screening-method"
RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
# FHIR R4's own extension for "the Library holding the logic used": the rule set's Library,
# which carries its source attributes (citations, developer, funding, dates, data used).
LIBRARY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/cqf-library"
RISK_DISPLAY = {
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
}


def _evidence_text(evidence: Evidence, *, dated: str = "onset ") -> str:
    onset = f"{dated}{evidence.when}, age {evidence.age_at_onset}"
    detail = f"; {evidence.detail}" if evidence.detail else ""
    return f"{evidence.description} [{evidence.code_label}] ({onset}{detail})"


def _finding_line(finding: CategoryFinding) -> str:
    category = finding.category
    items = "; ".join(_evidence_text(e) for e in sorted(finding.evidence,
                                                         key=lambda e: e.onset_bound))
    part = f", part of {category.part_of.id}" if category.part_of is not None else ""
    return f"{category.id} ({category.display}{part}): {items}"


def explained_text(explained: ExplainedEvidence) -> str:
    """One line for a diarrhea code a coded cause explained: found, not counted."""
    return (f"{explained.category.id}: {_evidence_text(explained.evidence)}, "
            f"{explained.explanation.text()}")


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
    if findings.explained:
        lines.append("Found, not counted (a coded cause explains it): " + "; ".join(
            explained_text(e) for e in findings.explained))
    if findings.shown:
        lines.append("Also shown, not scored: " + "; ".join(
            _evidence_text(e, dated="") for e in findings.shown))
    row = result.row
    if row.tier == "low":
        lines.append(f"Tier low by rule {row.row} of the IPEX screening rules "
                     f"v{result.rules_version}: {row.rule}.")
    else:
        lines.append(f"Tier {row.tier} by rule {row.row} of the IPEX screening rules "
                     f"v{result.rules_version}: {row.rule} (recommendation {row.recommend}).")
    return "\n".join(lines)


SHOWN_NOT_READ = 3


def not_read_text(result: ScreeningResult) -> str | None:
    """One sentence on what could have changed the result but was not read, or None."""
    missing = result.not_read
    if not missing:
        return None
    count = len(missing)
    listed = "; ".join(n.describe() for n in missing[:SHOWN_NOT_READ])
    more = f"; and {count - SHOWN_NOT_READ} more" if count > SHOWN_NOT_READ else ""
    return (f"{count} {'thing' if count == 1 else 'things'} in the record could have changed "
            f"this result but {'was' if count == 1 else 'were'} not read: {listed}{more}. "
            "Correct the record and screen again (Prefer: handling=strict refuses such a "
            "record instead).")


def notes(result: ScreeningResult) -> list[str]:
    """What a clinician must know beside the rationale: data quality, suppression, sex."""
    found = []
    unread = not_read_text(result)
    if unread:
        found.append(unread)
    findings = result.findings
    for suppression in findings.suppression:
        found.append(f"No test recommended: {suppression.reason}.")
    if findings.foxp3_negative is not None:
        negative = findings.foxp3_negative
        found.append(
            f"FOXP3 testing was negative ({negative.when}): the recommendation leaves FOXP3 "
            "out (IPEX itself is unlikely)."
        )
    if result.patient.birth_date is None:
        found.append(
            "The Patient has no usable birthDate, so no age at onset can be computed and no "
            "tier above low can be reached: record the birth date and screen again."
        )
    recommendation = result.recommendation
    if (recommendation is not None and recommendation.kind == "IPEX"
            and result.patient.sex != "male"):
        found.append(
            "IPEX is X-linked; sex assigned at birth is "
            f"{'female' if result.patient.sex == 'female' else 'not known'}, "
            "so an IPEX-like gene panel is recommended."
        )
    return found


def table_rows(findings: Findings, counted_supporting: frozenset[str]
               ) -> list[tuple[str, Evidence]]:
    """(label, evidence) for the evidence table: each resource once, labelled with its
    criterion and the narrower kind it shows ("ENT: Enteropathy (ENT-AIE: ...)"), then
    the supporting features."""
    narrower = {
        e.reference
        for f in findings.criteria.values() if f.category.part_of is not None
        for e in f.evidence
    }
    rows: list[tuple[str, Evidence]] = []
    for finding in findings.criteria.values():
        category = finding.category
        label = f"{category.id}: {category.display}"
        if category.part_of is not None:
            parent = category.part_of
            label = f"{parent.id}: {parent.display} ({label})"
        for evidence in sorted(finding.evidence, key=lambda e: (e.onset_bound, e.reference)):
            if category.part_of is None and evidence.reference in narrower:
                continue
            rows.append((label, evidence))
    for key, finding in findings.supporting.items():
        label = f"{finding.category.id}: {finding.category.display} (supporting feature"
        label += ")" if key in counted_supporting else "; not counted: began at 24 months or later)"
        for evidence in sorted(finding.evidence, key=lambda e: (e.onset_bound, e.reference)):
            rows.append((label, evidence))
    return rows


def _outcome(result: ScreeningResult, rules: RuleSet) -> dict[str, Any]:
    """IPEX syndrome (coded) for a boy, IPEX-like immune dysregulation otherwise."""
    shown = result.recommendation or rules.recommendation(
        "IPEX", result.patient.sex, foxp3_negative=result.findings.foxp3_negative is not None)
    outcome: dict[str, Any] = {"text": shown.outcome_text}
    if shown.outcome_coding:
        outcome["coding"] = [dict(shown.outcome_coding)]
    return outcome


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def narrative(result: ScreeningResult) -> str:
    """A small XHTML table of the same content, for any FHIR viewer."""
    findings = result.findings
    rows = [
        _row([label, evidence.description + (f" ({evidence.detail})" if evidence.detail else ""),
              evidence.code_label, evidence.when, evidence.age_at_onset])
        for label, evidence in table_rows(findings, result.counted_supporting)
    ]
    rows += [
        _row([f"{e.category.id}: found, not counted ({e.explanation.text()})",
              e.evidence.description, e.evidence.code_label, e.evidence.when,
              e.evidence.age_at_onset])
        for e in findings.explained
    ]
    table = (
        "<table><thead><tr><th>Criterion</th><th>Evidence</th><th>Code</th><th>Onset</th>"
        "<th>Age at onset</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="5">No criterion or feature found</td></tr>')
        + "</tbody></table>"
    )
    row = result.row
    if findings.shown:
        shown_rows = "".join(
            _row([e.description + (f" ({e.detail})" if e.detail else ""), e.code_label, e.when,
                  e.age_at_onset])
            for e in findings.shown
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
    if result.mitigation is not None:
        parts.append(f"<p><b>Recommendation:</b> {escape(result.mitigation)}</p>")
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
    resource["extension"] = [{
        "url": LIBRARY_EXTENSION,
        "valueCanonical": f"{rules.publication.library}|{rules.version}",
    }]
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
    if result.mitigation is not None:
        resource["mitigation"] = result.mitigation
    found_notes = notes(result)
    if found_notes:
        resource["note"] = [{"text": text} for text in found_notes]
    return resource
