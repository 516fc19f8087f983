"""The one place that reads a :class:`ScreeningResult`'s fields for population outputs.

When the core changes, this file is what adapts: the row, the recommendation kind
(IPEX / NDM / PANEL) and test, what was looked at but not counted
(``findings.not_counted``, ``findings.explained``) and what could not be read, with
its location (``result.not_read``), in ``flagged.csv``, ``summary.json`` and the
report all come from here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..screening import ScreeningResult

_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:[.,]\d+)?")
_DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True, slots=True)
class Reading:
    """What the population outputs need from one patient's screening."""

    tier: str
    row: int
    rule: str
    recommendation: str | None
    test: str | None
    suppressed: bool
    evidence: str
    criterion_ages: dict[str, float]
    not_counted: Counter[str]
    not_read: list[tuple[str, str]]

    @property
    def flagged(self) -> bool:
        """On the worklist: testing is recommended (tier high or moderate, not suppressed)."""
        return self.recommendation is not None


def read_result(result: ScreeningResult) -> Reading:
    findings = result.findings
    birth = result.patient.birth_date
    ages: dict[str, float] = {}
    parts: list[str] = []
    for key, finding in sorted(findings.criteria.items()):
        earliest = min(finding.evidence, key=lambda e: (e.onset_bound, e.reference))
        parts.append(f"{key}: {earliest.description} [{earliest.code_label}] "
                     f"at {earliest.age_at_onset}")
        if birth is not None:
            ages[key] = round((finding.onset_bound - birth).days / _DAYS_PER_MONTH, 1)
    recommendation = result.recommendation
    not_counted: Counter[str] = Counter()
    if findings.not_counted or findings.explained:  # most children: neither
        not_counted.update(not_read_kind(n.reason) for n in findings.not_counted)
        not_counted.update(
            not_read_kind(f"{e.category.id}: explained by {e.explanation.cause.display}")
            for e in findings.explained)
    return Reading(
        tier=result.tier,
        row=result.row.row,
        rule=result.row.rule,
        recommendation=recommendation.kind if recommendation else None,
        test=recommendation.test_name if recommendation else None,
        suppressed=result.suppressed,
        evidence="; ".join(parts),
        criterion_ages=ages,
        not_counted=not_counted,
        not_read=[(n.location, n.reason) for n in result.not_read],
    )


def not_read_kind(reason: str) -> str:
    """A reason with its numbers taken out, so no value or date reaches the counts."""
    return _NUMBER.sub("#", reason)[:300]
