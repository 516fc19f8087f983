"""The screening core: Bundle -> facts -> findings -> tier + recommendation.

This package does no I/O: no Flask, no network, no files, no clock. It screens
*as of* a date it is given, with a :class:`RuleSet` it is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .errors import InvalidEntry, NotABundle, NothingToScreen, ScreeningError
from .findings import find
from .record import read_bundle, unwrap_bundle
from .result import ScreeningResult, recommend
from .ruleset import RuleSet, RuleSetError, build_rule_set
from .tiers import decide_tier, supporting_counted

__all__ = [
    "InvalidEntry",
    "NotABundle",
    "NothingToScreen",
    "RuleSet",
    "RuleSetError",
    "ScreeningError",
    "ScreeningResult",
    "build_rule_set",
    "screen_bundle",
]


def screen_bundle(
    body: Mapping[str, Any],
    rules: RuleSet,
    *,
    as_of: dt.date,
    order_code: tuple[str, str] | None = None,
) -> list[ScreeningResult]:
    """Screen every patient in a Bundle (or Parameters holding one), in entry order."""
    bundle = unwrap_bundle(body)
    results = []
    for record in read_bundle(bundle, rules, order_code=order_code):
        findings = find(record, rules, as_of=as_of, order_code=order_code)
        decision = decide_tier(findings, rules, record.patient.birth_date)
        results.append(
            ScreeningResult(
                patient=record.patient,
                as_of=as_of,
                findings=findings,
                decision=decision,
                recommendation=recommend(
                    tier=decision.tier, findings=findings, patient=record.patient, rules=rules
                ),
                rules_version=rules.version,
                counted_supporting=frozenset(
                    f.category.id
                    for f in supporting_counted(findings, rules, record.patient.birth_date)
                ),
            )
        )
    return results
