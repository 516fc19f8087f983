"""What the evidence timeline draws for one child: the core's explain account, placed in time.

:func:`service.screening.explain.explain_result` (the account ``ipex-screen screen
--explain`` prints: criteria and features with their evidence and ages at onset, what
was found but not counted and why, what was not read) plus what only the rule set
knows: the birth date every age is counted from, which supporting features counted,
and the row that fired with each of its age limits as the date this child reaches it
(calendar months, as the core counts them), so the app shades exactly the windows the
rules checked. Pure: no Flask, no I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..screening import RuleSet, ScreeningResult
from ..screening.dates import AgeLimit
from ..screening.explain import explain_result
from ..screening.ruleset import CriterionRef, Requirement


def _limit(limit: AgeLimit | None, birth: dt.date | None) -> dict[str, Any] | None:
    if limit is None:
        return None
    reached = limit.date_reached(birth) if birth is not None else None
    return {"value": limit.value, "unit": limit.unit, "text": limit.describe(),
            "reachedOn": reached.isoformat() if reached is not None else None}


def _alternatives(requirement: Requirement) -> list[dict[str, Any]]:
    return [
        {"criterion": alt.criterion} if isinstance(alt, CriterionRef)
        else {"supportingFeatures": alt.at_least}
        for alt in requirement.any_of
    ]


def _fired_row(result: ScreeningResult) -> dict[str, Any]:
    row = result.row
    birth = result.patient.birth_date
    requirements = [{
        "anyOf": _alternatives(requirement),
        "onsetBefore": _limit(requirement.onset_before, birth),
        "onsetAtOrAfter": _limit(requirement.onset_at_or_after, birth),
    } for requirement in row.requirements]
    return {"row": row.row, "tier": row.tier, "rule": row.rule, "recommend": row.recommend,
            "requirements": requirements}


def timeline_account(result: ScreeningResult, rules: RuleSet) -> dict[str, Any]:
    """One patient's account, as the timeline app reads it."""
    birth = result.patient.birth_date
    return {
        **explain_result(result),
        "birthDate": birth.isoformat() if birth is not None else None,
        "supportingCounted": sorted(result.counted_supporting),
        "supportingOnsetBefore": _limit(rules.supporting_onset_before, birth),
        "firedRow": _fired_row(result),
    }


def rule_set_summary(rules: RuleSet) -> dict[str, Any]:
    """The rule set's identity and the categories the timeline has a lane for, in order."""
    return {
        "id": rules.id,
        "title": rules.title,
        "version": rules.version,
        "date": rules.date,
        "library": f"{rules.publication.library}|{rules.version}",
        "categories": [
            {"id": c.id, "display": c.display, "kind": c.kind,
             "partOf": c.part_of.id if c.part_of is not None else None}
            for c in rules.categories()
        ],
    }
