"""Bulk exports for the population tests: the Synthea bundles plus scenario children."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson

from bench.bulk_export import generate, synthea_bundles

from .conftest import SCENARIOS, load_json

AS_OF = dt.date(2025, 9, 1)
TRIAD = SCENARIOS / "classic-infant-boy-triad.json"
OUTPUTS = ("RiskAssessment.ndjson", "flagged.csv", "summary.json", "report.html")


def triad_bundle() -> Any:
    return load_json(TRIAD)["bundle"]


def synthea_plus_triad(directory: Path, *, patients: int = 40, **options: Any) -> Path:
    """The "done when" export: every Synthea bundle once (fresh ids) and the triad boy."""
    generate(directory, patients=patients, sources=synthea_bundles(), add=[triad_bundle()],
             **options)
    return directory


def outputs(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in OUTPUTS}


class Recorder:
    """A progress stand-in that records what it was told (for the engine tests)."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}

    def __call__(self, label: str, total: float, **_: Any) -> Recorder._Bar:
        return Recorder._Bar(self, label)

    class _Bar:
        def __init__(self, recorder: Recorder, label: str) -> None:
            self.recorder, self.label = recorder, label
            recorder.done.setdefault(label, 0)

        def advance(self, amount: float) -> None:
            self.recorder.done[self.label] += amount

        def close(self) -> None:
            pass




def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def export_with_unusable_lines(src: Path) -> Path:
    """Two Patients (one without an id), his Conditions, and one of each kind of bad line;
    two heart rates (which the rules do not use), one of them for an unknown patient."""
    src.mkdir(parents=True)
    boy = {"resourceType": "Patient", "id": "baby1", "gender": "male", "birthDate": "2025-01-10"}
    diarrhea = {"resourceType": "Condition", "subject": {"reference": "Patient/baby1"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "236071009"}]},
                "onsetDateTime": "2025-03-02"}
    diabetes = {**diarrhea, "code": {"coding": [{"system": "http://snomed.info/sct",
                                                 "code": "46635009"}]},
                "onsetDateTime": "2025-04-10"}
    _write(src / "Patient.ndjson", [
        orjson.dumps(boy),
        b"",                                                   # blank: skipped, not a problem
        orjson.dumps({**boy, "gender": "female"}),             # 3: duplicate id
        orjson.dumps({"resourceType": "Patient"}),              # 4: no id
        b" \t\r",                                               # blanks: skipped too
    ])
    _write(src / "Condition.ndjson", [
        orjson.dumps(diarrhea),
        b'{"resourceType": "Condition", "subject": ',           # 2: bad JSON
        orjson.dumps({**diarrhea, "subject": {"reference": "Patient/nobody"}}),  # 3
        orjson.dumps({**diarrhea, "subject": {"reference": "Group/g1"}}),        # 4
        orjson.dumps({**diabetes, "onsetDateTime": "2025-02-30"}),  # 5: a date that is not one
        orjson.dumps(diabetes),
        b"[1, 2]",                                              # 7: not a resource
        # 8: a number no float holds, in a line the rules read: orjson refuses it when
        # the line is screened
        orjson.dumps(diabetes)[:-1] + b', "extension": [{"url": "x", "valueDecimal": 1e400}]}',
    ])
    heart_rate = {"resourceType": "Observation", "subject": {"reference": "Patient/baby1"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                  "valueQuantity": {"value": 140, "unit": "/min"}}
    _write(src / "Observation.ndjson", [
        orjson.dumps(heart_rate),                               # coded, not used by the rules
        orjson.dumps({**heart_rate, "subject": {"reference": "Patient/nobody"}}),  # 2
        # 3: the same number in a line the rules pass over goes unnoticed (lines.py)
        orjson.dumps(heart_rate)[:-1] + b', "note": [{"text": "x", "n": 1e400}]}',
    ])
    _write(src / "Encounter.ndjson", [b'{"resourceType": "Encounter", "id": "e1"}'])
    _write(src / "OperationOutcome.error.ndjson", [orjson.dumps(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                        "code": "processing"}]})])
    return src
