"""The four outputs, written from outcomes already sorted by patient id.

``RiskAssessment.ndjson`` (every screened patient, or only the flagged ones),
``flagged.csv`` (the worklist), ``summary.json`` (counts, no patient data) and
``report.html`` (``report.py``). Nothing written depends on the engine, the number
of workers or the time of the run, so a re-run writes identical bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .patient import PatientOutcome
from .problems import Problem, Problems
from .progress import Progress
from .source import ExportFile
from .tally import ExportTally

RISK_ASSESSMENTS = "RiskAssessment.ndjson"
FLAGGED = "flagged.csv"
SUMMARY = "summary.json"
REPORT = "report.html"
FLAGGED_COLUMNS = ("patient_id", "tier", "row", "recommendation", "test", "evidence")
TIERS = ("high", "moderate", "low")


@dataclass(slots=True)
class RunInfo:
    """What the run was asked: shown in the summary and the report."""

    as_of: dt.date
    rules_id: str
    rules_version: str
    flagged_only: bool
    files: list[ExportFile]
    export: dict[str, Any] | None = None


@dataclass(slots=True)
class OutcomeCounts:
    screened: int = 0
    flagged: int = 0
    suppressed: int = 0
    with_not_read: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    rows: Counter[int] = field(default_factory=Counter)
    recommendations: Counter[str] = field(default_factory=Counter)
    criterion_ages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    not_counted: Counter[str] = field(default_factory=Counter)
    # What the core could not read, by reason, the earliest listed by file and line.
    not_read: Problems = field(default_factory=Problems)

    def add(self, outcome: PatientOutcome) -> None:
        self.screened += 1
        self.tiers[outcome.tier] += 1
        self.rows[outcome.row] += 1
        self.not_counted.update(outcome.not_counted)
        self.suppressed += outcome.suppressed
        self.with_not_read += bool(outcome.not_read)
        for file_index, line, where, reason in outcome.not_read:
            self.not_read.add(Problem(file_index, line, reason, where))
        if outcome.flagged:
            self.flagged += 1
            self.recommendations[f"{outcome.recommendation}: {outcome.test}"] += 1
            for criterion, months in outcome.criterion_ages.items():
                self.criterion_ages[criterion].append(months)


def write_outputs(out: Path, outcomes: Iterable[bytes], tally: ExportTally, info: RunInfo, *,
                  patients: int, progress: Callable[..., Progress] = Progress
                  ) -> dict[str, Any]:
    """Write RiskAssessment.ndjson and flagged.csv, then summary.json; return the summary."""
    counts = OutcomeCounts()
    writing = progress("writing outputs", patients, unit="patients")
    with open(out / RISK_ASSESSMENTS, "wb") as assessments, \
         open(out / FLAGGED, "w", encoding="utf-8", newline="") as flagged_file:
        flagged = csv.writer(flagged_file, lineterminator="\n")
        flagged.writerow(FLAGGED_COLUMNS)
        for wire in outcomes:
            outcome = PatientOutcome.from_wire(wire)
            counts.add(outcome)
            if outcome.flagged:
                flagged.writerow((outcome.patient_id, outcome.tier, outcome.row,
                                  outcome.recommendation, outcome.test, outcome.evidence))
            if outcome.flagged or not info.flagged_only:
                assessments.write(outcome.risk_assessment + b"\n")
            writing.advance(1)
    writing.close()
    summary = build_summary(counts, tally, info, patients=patients)
    (out / SUMMARY).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def build_summary(counts: OutcomeCounts, tally: ExportTally, info: RunInfo, *,
                  patients: int) -> dict[str, Any]:
    problems: Problems = tally.problems
    names = {f.index: f.name for f in info.files}
    return {
        "asOf": info.as_of.isoformat(),
        "rules": {"id": info.rules_id, "version": info.rules_version},
        "flaggedOnly": info.flagged_only,
        "export": info.export,
        "files": [f.name for f in info.files],
        "lines": tally.lines,
        "resources": _sorted_counts(tally.screened_types),
        "resourcesCodedNotUsed": _sorted_counts(tally.passed_over),
        "resourcesNotRead": _sorted_counts(tally.other_types),
        "exportErrors": {"issues": sum(tally.export_errors.values()),
                         "byCode": _sorted_counts(tally.export_errors)},
        "patients": {
            "inExport": patients,
            "screened": counts.screened,
            "notScreened": patients - counts.screened,
            "flagged": counts.flagged,
            "suppressed": counts.suppressed,
            "withSomethingNotRead": counts.with_not_read,
        },
        "tiers": {tier: counts.tiers.get(tier, 0) for tier in TIERS},
        "rows": {str(row): n for row, n in sorted(counts.rows.items())},
        "recommendations": _sorted_counts(counts.recommendations),
        "criterionAgesMonths": {key: sorted(ages)
                                for key, ages in sorted(counts.criterion_ages.items())},
        "notCounted": _sorted_counts(counts.not_counted),
        "notRead": {
            "total": counts.not_read.total,
            "byReason": _sorted_counts(counts.not_read.counts),
            "listed": [{"file": names.get(p.file_index, str(p.file_index)), "line": p.line,
                        "where": p.reason, "reason": p.kind} for p in counts.not_read.listed()],
        },
        "unusable": {
            "total": problems.total,
            "byKind": _sorted_counts(problems.counts),
            "listed": [{"file": names.get(p.file_index, str(p.file_index)), "line": p.line,
                        "kind": p.kind, "reason": p.reason} for p in problems.listed()],
        },
    }


def _sorted_counts(counter: Counter[Any]) -> dict[str, int]:
    """Largest first, then by name: the same order every run."""
    return {str(k): n for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))}
