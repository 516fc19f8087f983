"""The screening core: Bundle -> facts -> findings -> tier + recommendation.

This package does no I/O: no Flask, no network, no files, no clock. It screens
*as of* a date it is given, with a :class:`RuleSet` it is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .errors import NotABundle, NothingToScreen, ScreeningError
from .evidence import Evidence
from .record import PASSES_OVER_READS, passes_over, read_bundle, unwrap_bundle
from .result import ScreeningResult
from .risk_assessment import explained_text, notes, table_rows
from .ruleset import RuleSet, RuleSetError, build_rule_set
from .screen import screen_record

__all__ = [
    "PASSES_OVER_READS",
    "Evidence",
    "NotABundle",
    "NothingToScreen",
    "RuleSet",
    "RuleSetError",
    "ScreeningError",
    "ScreeningResult",
    "build_rule_set",
    "explained_text",
    "notes",
    "passes_over",
    "screen_bundle",
    "screen_record",
    "table_rows",
    "unwrap_bundle",
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
    return [
        screen_record(record, rules, as_of=as_of, order_code=order_code)
        for record in read_bundle(bundle, rules, as_of=as_of, order_code=order_code)
    ]
