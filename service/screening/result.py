"""The screening of one patient: findings, tier, suppression and recommendation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from .evidence import Findings
from .facts import NotRead, PatientFacts
from .ruleset import Recommendation, RuleSet, TierRow
from .tiers import TierDecision


@dataclass(frozen=True, slots=True)
class ScreeningResult:
    patient: PatientFacts
    as_of: dt.date
    findings: Findings
    decision: TierDecision
    recommendation: Recommendation | None
    rules_version: str
    counted_supporting: frozenset[str] = frozenset()
    not_read: tuple[NotRead, ...] = ()

    @property
    def tier(self) -> str:
        """The tier the evidence gives (also for a suppressed patient)."""
        return self.decision.tier

    @property
    def row(self) -> TierRow:
        """The row of the tier table that fired."""
        return self.decision.row

    @property
    def suppressed(self) -> bool:
        return bool(self.findings.suppression)

    @property
    def basis(self) -> list[str]:
        return self.findings.contributing_references(counted_supporting=self.counted_supporting)

    def with_locations(self, relocate: Callable[[str], str]) -> ScreeningResult:
        """The same result with each not-read location rewritten (an adapter names the
        place in the caller's terms: a CDS prefetch key rather than a Bundle entry)."""
        moved = tuple(dataclasses.replace(n, location=relocate(n.location))
                      for n in self.not_read)
        return dataclasses.replace(self, not_read=moved)

    @property
    def mitigation(self) -> str | None:
        """What to do, naming the row that fired (RiskAssessment.mitigation, the card)."""
        if self.recommendation is None:
            return None
        row = self.row
        text = (f"Rule {row.row} ({row.tier}: {row.rule}; recommendation "
                f"{self.recommendation.kind}): {self.recommendation.mitigation}")
        return f"{text} {row.recommend_also}" if row.recommend_also else text


def recommend(
    *, row: TierRow, findings: Findings, patient: PatientFacts, rules: RuleSet
) -> Recommendation | None:
    """What to test for (rules sections 3-4), or None for tier low and suppressed patients."""
    if row.recommend is None or findings.suppression:
        return None
    return rules.recommendation(
        row.recommend, patient.sex, foxp3_negative=findings.foxp3_negative is not None
    )
