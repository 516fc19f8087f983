"""What reading an export counted: lines by resource type, export errors, problems."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .lines import OUTCOME, Keyed, Other, Unusable
from .problems import Problem, Problems


@dataclass(slots=True)
class ExportTally:
    """Counts that add up across blocks, workers and Spark tasks (``merge``)."""

    lines: int = 0
    screened_types: Counter[str] = field(default_factory=Counter)
    # Of those, the ones coded with nothing the rules use (passed over, not kept).
    passed_over: Counter[str] = field(default_factory=Counter)
    other_types: Counter[str] = field(default_factory=Counter)
    export_errors: Counter[str] = field(default_factory=Counter)
    problems: Problems = field(default_factory=Problems)

    def count(self, file_index: int, line: int, classified: Keyed | Unusable | Other) -> None:
        self.lines += 1
        if isinstance(classified, Keyed):
            self.screened_types[classified.resource_type] += 1
        elif isinstance(classified, Unusable):
            self.problems.add(Problem(file_index, line, classified.kind, classified.reason))
        elif classified.resource_type == OUTCOME:
            for code in _issue_codes(classified.resource):
                self.export_errors[code] += 1
        else:
            self.other_types[classified.resource_type] += 1

    def count_passed(self, passed: Mapping[tuple[str, str], list[int]]) -> None:
        """Lines passed over (by patient id and type, as the reader gathers them)."""
        for (_, kind), numbers in passed.items():
            self.lines += len(numbers)
            self.screened_types[kind] += len(numbers)
            self.passed_over[kind] += len(numbers)

    def merge(self, other: ExportTally) -> None:
        self.lines += other.lines
        self.screened_types.update(other.screened_types)
        self.passed_over.update(other.passed_over)
        self.other_types.update(other.other_types)
        self.export_errors.update(other.export_errors)
        self.problems.merge(other.problems)


def _issue_codes(outcome: Any) -> list[str]:
    """An export error file's OperationOutcome: one count per issue, by issue code."""
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    codes = [i.get("code") for i in issues if isinstance(i, dict)] if isinstance(
        issues, list) else []
    return [c if isinstance(c, str) else "unknown" for c in codes] or ["unknown"]
