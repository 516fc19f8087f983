"""The tier table (rules section 3): the first row whose every requirement is met wins.

An age limit in a row applies to every criterion the row names; supporting
features count only when they began before the rule set's supporting limit. A
criterion's onset is its earliest evidence; undated evidence is bounded by the
screening date, which satisfies "< limit" only when the bound itself is below it,
and a lower limit ("from 6 months") is checked against that same bound, so that an
undated onset is never excluded by a lower limit it might not meet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .evidence import CategoryFinding, Findings
from .ruleset import CriterionRef, Requirement, RuleSet, SupportingCount, TierRow


@dataclass(frozen=True, slots=True)
class TierDecision:
    row: TierRow

    @property
    def tier(self) -> str:
        return self.row.tier


def _began_within(
    finding: CategoryFinding, before: dt.date | None, at_or_after: dt.date | None
) -> bool:
    bound = finding.onset_bound
    return (before is None or bound < before) and (at_or_after is None or bound >= at_or_after)


def supporting_counted(
    findings: Findings, rules: RuleSet, birth: dt.date | None
) -> list[CategoryFinding]:
    """Supporting features that count: begun before the supporting limit (24 months)."""
    if birth is None:
        return []
    limit = rules.supporting_onset_before.date_reached(birth)
    return [f for f in findings.supporting.values() if f.onset_bound < limit]


def _meets(
    requirement: Requirement,
    findings: Findings,
    rules: RuleSet,
    birth: dt.date | None,
) -> bool:
    before: dt.date | None = None
    at_or_after: dt.date | None = None
    if requirement.onset_before is not None or requirement.onset_at_or_after is not None:
        if birth is None:
            return False
        if requirement.onset_before is not None:
            before = requirement.onset_before.date_reached(birth)
        if requirement.onset_at_or_after is not None:
            at_or_after = requirement.onset_at_or_after.date_reached(birth)
    for alternative in requirement.any_of:
        if isinstance(alternative, CriterionRef):
            finding = findings.criteria.get(alternative.criterion)
            if finding is not None and _began_within(finding, before, at_or_after):
                return True
        elif isinstance(alternative, SupportingCount):
            counted = [
                f for f in supporting_counted(findings, rules, birth)
                if _began_within(f, before, at_or_after)
            ]
            if len(counted) >= alternative.at_least:
                return True
    return False


def decide_tier(findings: Findings, rules: RuleSet, birth: dt.date | None) -> TierDecision:
    """Return the first row of the tier table that the findings meet."""
    for row in rules.tiers:
        if all(_meets(r, findings, rules, birth) for r in row.requirements):
            return TierDecision(row)
    raise AssertionError("the rule set guarantees a final 'low' row")
