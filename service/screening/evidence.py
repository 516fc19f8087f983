"""What a screening found, as a clinician checks it: evidence, findings, what did not count.

Every piece of evidence keeps the resource, its code and display, the onset date
and the age at onset. What was read but not counted is kept too, with the reason;
a diarrhea code that a coded cause explains keeps that cause beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from .dates import describe_age
from .ruleset import Category, ExplainingCause
from .terminology import HGNC, HPO, ICD10, ICD10CM, LOINC, OMIM, ORPHANET, SNOMED

SYSTEM_NAMES = {
    SNOMED: "SNOMED CT",
    ICD10CM: "ICD-10-CM",
    ICD10: "ICD-10",
    HPO: "HPO",
    ORPHANET: "Orphanet",
    OMIM: "OMIM",
    LOINC: "LOINC",
    HGNC: "HGNC",
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One resource that shows a criterion or feature, as a clinician would check it."""

    reference: str
    description: str
    code_label: str
    onset: dt.date | None
    onset_bound: dt.date
    onset_source: str
    age_at_onset: str
    detail: str | None = None

    @property
    def when(self) -> str:
        return self.onset.isoformat() if self.onset else "date not recorded"


@dataclass(slots=True)
class CategoryFinding:
    category: Category
    evidence: list[Evidence] = field(default_factory=list)
    _references: set[str] = field(default_factory=set, repr=False)

    @property
    def onset_bound(self) -> dt.date:
        """The latest the criterion can have begun: its earliest evidence."""
        return min(e.onset_bound for e in self.evidence)

    def add(self, evidence: Evidence) -> None:
        """Add evidence once per resource (one piece of evidence counts once)."""
        if evidence.reference not in self._references:
            self._references.add(evidence.reference)
            self.evidence.append(evidence)

    def copy(self) -> CategoryFinding:
        return CategoryFinding(self.category, list(self.evidence), set(self._references))


@dataclass(frozen=True, slots=True)
class Explanation:
    """The coded cause that explains a diarrhea code, and the window it fell in."""

    cause: ExplainingCause
    reference: str
    description: str
    code_label: str
    onset: dt.date | None

    def text(self) -> str:
        when = self.onset.isoformat() if self.onset else "onset not recorded"
        return (f"explained by {self.cause.display}: {self.description} [{self.code_label}] "
                f"({when}; {self.cause.window_text})")


@dataclass(frozen=True, slots=True)
class ExplainedEvidence:
    """Found, not counted: a diarrhea code explained by a coded cause."""

    category: Category
    evidence: Evidence
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class NotCounted:
    reference: str
    what: str
    reason: str


@dataclass(frozen=True, slots=True)
class SuppressionFinding:
    kind: Literal["diagnosis", "order", "result"]
    reference: str
    reason: str


@dataclass(slots=True)
class Findings:
    criteria: dict[str, CategoryFinding] = field(default_factory=dict)
    supporting: dict[str, CategoryFinding] = field(default_factory=dict)
    explained: list[ExplainedEvidence] = field(default_factory=list)
    not_counted: list[NotCounted] = field(default_factory=list)
    suppression: list[SuppressionFinding] = field(default_factory=list)
    foxp3_negative: Evidence | None = None
    shown: list[Evidence] = field(default_factory=list)

    def add(self, category: Category, evidence: Evidence) -> None:
        """Add evidence to its category, and to the broader criterion it is part of."""
        table = self.criteria if category.kind == "criterion" else self.supporting
        table.setdefault(category.id, CategoryFinding(category)).add(evidence)
        if category.part_of is not None:
            self.add(category.part_of, evidence)

    def copy(self) -> Findings:
        """A copy whose category tables can be extended without touching this one."""
        return Findings(
            criteria={k: f.copy() for k, f in self.criteria.items()},
            supporting={k: f.copy() for k, f in self.supporting.items()},
            explained=list(self.explained),
            not_counted=list(self.not_counted),
            suppression=list(self.suppression),
            foxp3_negative=self.foxp3_negative,
            shown=list(self.shown),
        )

    def contributing_references(self, *, counted_supporting: Collection[str]) -> list[str]:
        """Every resource behind the result, for RiskAssessment.basis (no duplicates).

        Supporting features count only when they began before the supporting limit;
        the others were found but did not contribute, so they are not in the basis.
        A cause that explained a diarrhea code away did shape the result: it is.
        """
        seen: dict[str, None] = {}
        counted = [f for key, f in self.supporting.items() if key in counted_supporting]
        for finding in (*self.criteria.values(), *counted):
            for evidence in finding.evidence:
                seen.setdefault(evidence.reference, None)
        for explained in self.explained:
            seen.setdefault(explained.explanation.reference, None)
        for suppression in self.suppression:
            seen.setdefault(suppression.reference, None)
        if self.foxp3_negative is not None:
            seen.setdefault(self.foxp3_negative.reference, None)
        return list(seen)


def code_label(system: str, code: str) -> str:
    return f"{SYSTEM_NAMES.get(system, system)} {code}"


def age_label(birth: dt.date | None, onset: dt.date | None, as_of: dt.date) -> str:
    if birth is None:
        return "unknown (no birth date)"
    if onset is None:
        return f"unknown (at most {describe_age(birth, as_of)})"
    return describe_age(birth, onset)


def make_evidence(
    *,
    reference: str,
    description: str,
    label: str,
    onset: dt.date | None,
    onset_source: str,
    birth: dt.date | None,
    as_of: dt.date,
    detail: str | None = None,
) -> Evidence:
    return Evidence(
        reference=reference,
        description=description,
        code_label=label,
        onset=onset,
        onset_bound=onset if onset is not None else as_of,
        onset_source=onset_source,
        age_at_onset=age_label(birth, onset, as_of),
        detail=detail,
    )
