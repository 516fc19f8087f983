"""Screen one record: coded findings, lab readings, the tier row, the recommendation.

A met lab combination (hyperglycemia + islet antibody, high TSH + thyroid
antibody) can be read two ways: as the criterion, or as its antibody counting as
a supporting feature. The rules (section 2) say which reading is the default:
labs make a criterion only where the coded record does not already show it. The
other reading is tried too, and kept only when it meets an earlier row of the
tier table; so adding a result or a diagnosis never lowers a tier (a coded
diagnosis dated after the lab evidence must not erase the earlier lab-shown
onset, and a glucose value must not use up an antibody a row needed).
"""

from __future__ import annotations

import datetime as dt
import itertools

from .evidence import Findings
from .facts import PatientRecord
from .findings import find
from .labs import LabReading, read_labs
from .result import ScreeningResult, recommend
from .ruleset import RuleSet
from .tiers import TierDecision, decide_tier, supporting_counted


def _default_reading(coded: Findings, labs: LabReading) -> tuple[bool, ...]:
    return tuple(
        not (met.combination.yields_to_coded_evidence and met.category.id in coded.criteria)
        for met in labs.combinations
    )


def _readings(default: tuple[bool, ...]) -> list[tuple[bool, ...]]:
    """Every way to read the met combinations, the rules' default first."""
    others = [r for r in itertools.product((True, False), repeat=len(default)) if r != default]
    return [default, *others]


def screen_record(
    record: PatientRecord,
    rules: RuleSet,
    *,
    as_of: dt.date,
    order_code: tuple[str, str] | None = None,
) -> ScreeningResult:
    """Screen one patient's record as of a date."""
    birth = record.patient.birth_date
    coded = find(record, rules, as_of=as_of, order_code=order_code)
    labs = read_labs(record, rules, as_of=as_of)
    best: tuple[Findings, TierDecision] | None = None
    for reading in _readings(_default_reading(coded, labs)):
        findings = coded.copy()
        labs.apply(findings, reading)
        decision = decide_tier(findings, rules, birth)
        if best is None or decision.row.row < best[1].row.row:
            best = (findings, decision)
    assert best is not None
    findings, decision = best
    return ScreeningResult(
        patient=record.patient,
        as_of=as_of,
        findings=findings,
        decision=decision,
        recommendation=recommend(
            row=decision.row, findings=findings, patient=record.patient, rules=rules
        ),
        rules_version=rules.version,
        counted_supporting=frozenset(
            f.category.id for f in supporting_counted(findings, rules, birth)
        ),
        not_read=tuple(record.not_read),
    )
