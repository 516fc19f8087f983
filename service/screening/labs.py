"""Lab evidence from LOINC-coded Observations (rules section 2, "Labs").

The lab definitions live in ``fhir_profiles/rules/`` and reach this module through
``RuleSet.labs``. With no lab definitions loaded, labs add nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from .record import PatientRecord
from .ruleset import RuleSet

if TYPE_CHECKING:
    from .findings import Findings


def add_lab_findings(
    record: PatientRecord, rules: RuleSet, *, as_of: dt.date, findings: Findings
) -> None:
    """Add the criteria and supporting features that the record's labs show."""
    if not rules.labs.get("labs"):
        return
