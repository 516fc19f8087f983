"""The screening of one patient: findings, tier, suppression and recommendation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .findings import Findings
from .record import PatientFacts
from .ruleset import Recommendation, RuleSet
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

    @property
    def tier(self) -> str:
        """The tier the evidence gives (also for a suppressed patient)."""
        return self.decision.tier

    @property
    def suppressed(self) -> bool:
        return bool(self.findings.suppression)

    @property
    def recommends_testing(self) -> bool:
        return self.recommendation is not None

    @property
    def basis(self) -> list[str]:
        return self.findings.contributing_references(counted_supporting=self.counted_supporting)


def recommend(
    *, tier: str, findings: Findings, patient: PatientFacts, rules: RuleSet
) -> Recommendation | None:
    """What to test for (rules section 4), or None for low tier and suppressed patients."""
    if tier == "low" or findings.suppression:
        return None
    if patient.sex == "male":
        key = "male-foxp3-negative" if findings.foxp3_negative is not None else "male"
    else:
        key = patient.sex
    return rules.recommendations[key]
