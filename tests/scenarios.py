"""The scenario corpus: a bundle, its screening date and what a clinician expects.

Each file under ``tests/data/scenarios/`` is::

    {"description": "...", "asOf": "YYYY-MM-DD", "bundle": {...FHIR Bundle...},
     "expect": [{"patient": "Patient/x", "tier": "high", "row": 1,
                 "criteria": ["ENT", ...], "supporting": [...],
                 "recommendation": "IPEX/male" | "NDM/any" | ... (kind/variant) | null,
                 "suppressed": false, "basis": [...optional...],
                 "explained": ["Condition/x", ...optional: diarrhea codes a cause explained],
                 "notCounted": ["substring of a reason", ...optional...]}]}

One entry of ``expect`` per patient, in Bundle order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import load_json


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    as_of: dt.date
    bundle: dict[str, Any]
    expect: list[dict[str, Any]]


def load_scenario(path: Path) -> Scenario:
    doc = load_json(path)
    expect = doc["expect"]
    return Scenario(
        name=path.stem,
        description=doc["description"],
        as_of=dt.date.fromisoformat(doc["asOf"]),
        bundle=doc["bundle"],
        expect=expect if isinstance(expect, list) else [expect],
    )
