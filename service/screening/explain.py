"""The debug view of a screening: every finding, what was not counted and why."""

from __future__ import annotations

from typing import Any

from .evidence import CategoryFinding, Evidence
from .result import ScreeningResult


def _evidence(evidence: Evidence) -> dict[str, Any]:
    return {
        "reference": evidence.reference,
        "description": evidence.description,
        "code": evidence.code_label,
        "onset": evidence.onset.isoformat() if evidence.onset else None,
        "onsetSource": evidence.onset_source,
        "ageAtOnset": evidence.age_at_onset,
        "detail": evidence.detail,
    }


def _finding(finding: CategoryFinding) -> dict[str, Any]:
    part_of = finding.category.part_of
    return {
        "display": finding.category.display,
        "partOf": part_of.id if part_of is not None else None,
        "onsetBound": finding.onset_bound.isoformat(),
        "evidence": [_evidence(e) for e in finding.evidence],
    }


def explain_result(result: ScreeningResult) -> dict[str, Any]:
    """A plain-JSON account of one patient's screening, for people debugging rules."""
    findings = result.findings
    return {
        "patient": result.patient.reference,
        "sex": result.patient.sex,
        "sexSource": result.patient.sex_source,
        "asOf": result.as_of.isoformat(),
        "rulesVersion": result.rules_version,
        "tier": result.tier,
        "tierRow": result.row.row,
        "tierRule": result.row.rule,
        "recommendationKind": result.row.recommend,
        "suppressed": result.suppressed,
        "recommendation": result.recommendation.key if result.recommendation else None,
        "mitigation": result.mitigation,
        "criteria": {key: _finding(f) for key, f in findings.criteria.items()},
        "supporting": {key: _finding(f) for key, f in findings.supporting.items()},
        "suppression": [
            {"kind": s.kind, "reference": s.reference, "reason": s.reason}
            for s in findings.suppression
        ],
        "explained": [
            {**_evidence(e.evidence), "category": e.category.id,
             "explainedBy": {"cause": e.explanation.cause.id,
                             "reference": e.explanation.reference,
                             "description": e.explanation.description,
                             "code": e.explanation.code_label,
                             "onset": e.explanation.onset.isoformat()
                             if e.explanation.onset else None,
                             "window": e.explanation.cause.window_text}}
            for e in findings.explained
        ],
        "foxp3Negative": _evidence(findings.foxp3_negative) if findings.foxp3_negative else None,
        "shown": [_evidence(e) for e in findings.shown],
        "notRead": [
            {"location": n.location, "reference": n.reference, "reason": n.reason}
            for n in result.not_read
        ],
        "notCounted": [
            {"reference": n.reference, "what": n.what, "reason": n.reason}
            for n in findings.not_counted
        ],
    }
