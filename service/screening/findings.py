"""Findings: which criteria and supporting features a record meets, and the evidence.

Every piece of evidence keeps what a clinician needs to check it: the resource,
its code and display, the onset date and the age at onset. What was read but not
counted is kept too, with the reason, for the debug view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .dates import describe_age
from .record import Coding, ConditionFact, ObservationFact, OrderFact, PatientRecord
from .ruleset import Category, EvidenceSource, RuleSet
from .terminology import HGNC, HPO, ICD10, ICD10CM, LOINC, OMIM, ORPHANET, SNOMED, normalise_code

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
_INACTIVE_ORDER = frozenset({"revoked", "entered-in-error"})
_IGNORED_OBSERVATION = frozenset({"entered-in-error", "cancelled"})


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

    @property
    def onset_bound(self) -> dt.date:
        """The latest the criterion can have begun: its earliest evidence."""
        return min(e.onset_bound for e in self.evidence)

    @property
    def earliest(self) -> Evidence:
        return min(self.evidence, key=lambda e: (e.onset_bound, e.reference))


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
    not_counted: list[NotCounted] = field(default_factory=list)
    suppression: list[SuppressionFinding] = field(default_factory=list)
    foxp3_negative: Evidence | None = None
    shown: list[Evidence] = field(default_factory=list)

    def add(self, category: Category, evidence: Evidence) -> None:
        table = self.criteria if category.kind == "criterion" else self.supporting
        finding = table.setdefault(category.id, CategoryFinding(category))
        if all(e.reference != evidence.reference for e in finding.evidence):
            finding.evidence.append(evidence)

    def contributing_references(self, *, counted_supporting: Collection[str]) -> list[str]:
        """Every resource behind the result, for RiskAssessment.basis (no duplicates).

        Supporting features count only when they began before the supporting limit;
        the others were found but did not contribute, so they are not in the basis.
        """
        seen: dict[str, None] = {}
        counted = [f for key, f in self.supporting.items() if key in counted_supporting]
        for finding in (*self.criteria.values(), *counted):
            for evidence in finding.evidence:
                seen.setdefault(evidence.reference, None)
        for suppression in self.suppression:
            seen.setdefault(suppression.reference, None)
        if self.foxp3_negative is not None:
            seen.setdefault(self.foxp3_negative.reference, None)
        return list(seen)


def code_label(coding: Coding) -> str:
    return f"{SYSTEM_NAMES.get(coding.system, coding.system)} {coding.code}"


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


def _source_rejects(
    source: EvidenceSource,
    condition: ConditionFact,
    birth: dt.date | None,
    as_of: dt.date,
) -> tuple[str | None, str | None]:
    """Return (why it does not count, detail) for a source's extra conditions."""
    onset = condition.onset.date
    detail = None
    if source.onset_before is not None:
        if birth is None:
            return "no birth date, so the age at onset is unknown", None
        if (onset or as_of) >= source.onset_before.date_reached(birth):
            return f"counts only with {source.describe_condition()}", None
    if source.onset_at_or_after is not None:
        if birth is None or onset is None:
            return f"counts only with {source.describe_condition()}; onset not recorded", None
        if onset < source.onset_at_or_after.date_reached(birth):
            return (
                f"onset before {source.onset_at_or_after.describe()} is taken as congenital",
                None,
            )
    if source.persistent_for_days is not None:
        if onset is None:
            return "nonspecific diarrhea with no onset date cannot be shown persistent", None
        if condition.abatement is not None:
            end = condition.abatement
        elif condition.resolved_without_date or condition.clinical_status in (
            "inactive",
            "resolved",
            "remission",
        ):
            return "nonspecific diarrhea resolved with no abatement date: not persistent", None
        else:
            end = as_of
        days = (min(end, as_of) - onset).days
        if days < source.persistent_for_days:
            return (
                f"nonspecific diarrhea lasted {days} days; it counts only when persistent "
                f"for at least {source.persistent_for_days} days",
                None,
            )
        detail = f"persistent for {days} days"
    return None, detail


def _describe(coding: Coding, condition: ConditionFact, fallback: str | None) -> str:
    return coding.display or fallback or condition.text or coding.code


def _condition_findings(
    record: PatientRecord, rules: RuleSet, as_of: dt.date, findings: Findings
) -> None:
    birth = record.patient.birth_date
    for condition in record.conditions:
        first = condition.codings[0] if condition.codings else None
        what = (first.display or condition.text or first.code) if first else "Condition"
        if not condition.counts:
            findings.not_counted.append(
                NotCounted(condition.reference, what,
                           f"verificationStatus is {condition.verification_status}")
            )
            continue
        if condition.onset.date is not None and condition.onset.date > as_of:
            findings.not_counted.append(
                NotCounted(condition.reference, what, "began after the screening date")
            )
            continue
        for coding in condition.codings:
            if rules.is_ipex_diagnosis(coding.system, coding.code):
                findings.suppression.append(
                    SuppressionFinding(
                        "diagnosis",
                        condition.reference,
                        f"IPEX is already diagnosed: {_describe(coding, condition, None)} "
                        f"({code_label(coding)}), recorded {condition.onset.date or 'undated'}",
                    )
                )
                break
        # One piece of evidence counts once: the first coding the rules classify wins.
        classified = next(
            (
                (coding, hit)
                for coding in condition.codings
                if (hit := rules.classify(coding.system, coding.code)) is not None
            ),
            None,
        )
        if classified is None:
            for coding in condition.codings:
                exclusion = rules.exclusion(coding.system, coding.code)
                if exclusion is not None:
                    findings.not_counted.append(
                        NotCounted(condition.reference, _describe(coding, condition, None),
                                   exclusion.reason)
                    )
                    break
            continue
        coding, hit = classified
        canonical = rules.aliases.canonical(coding.system)
        shown = Coding(canonical, normalise_code(canonical, coding.code), coding.display)
        listed = hit.source.value_set.displays.get((shown.system, shown.code))
        description = _describe(coding, condition, listed or hit.category.display)
        reason, detail = _source_rejects(hit.source, condition, birth, as_of)
        if reason is not None:
            findings.not_counted.append(
                NotCounted(condition.reference, description, f"{hit.category.id}: {reason}")
            )
            continue
        findings.add(
            hit.category,
            make_evidence(
                reference=condition.reference,
                description=description,
                label=code_label(shown),
                onset=condition.onset.date,
                onset_source=condition.onset.source,
                birth=birth,
                as_of=as_of,
                detail=detail,
            ),
        )


def _values(concept: Any) -> Iterable[tuple[str, str, str]]:
    """(system, code, display-or-text) of a CodeableConcept's codings and text."""
    if not isinstance(concept, Mapping):
        return
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping):
            yield (str(coding.get("system", "")), str(coding.get("code", "")),
                   str(coding.get("display", "")))
    if isinstance(concept.get("text"), str):
        yield "", "", concept["text"]


def _has(concept: Any, rules: RuleSet, system: str, code: str) -> bool:
    return any(
        rules.aliases.canonical(s) == system and normalise_code(system, c) == code
        for s, c, _ in _values(concept)
    )


def _parts(resource: Mapping[str, Any]) -> Iterable[tuple[Any, Any]]:
    """(code, valueCodeableConcept) of the Observation itself and of each component."""
    yield resource.get("code"), resource.get("valueCodeableConcept")
    for component in resource.get("component") or []:
        if isinstance(component, Mapping):
            yield component.get("code"), component.get("valueCodeableConcept")


def _foxp3_result(
    observation: ObservationFact, record: PatientRecord, rules: RuleSet, as_of: dt.date,
    findings: Findings,
) -> None:
    resource = observation.resource
    sup = rules.suppression
    if resource.get("status") in _IGNORED_OBSERVATION:
        return
    if observation.effective.date is not None and observation.effective.date > as_of:
        return
    gene_hgnc = normalise_code(HGNC, sup.gene_hgnc)
    is_foxp3 = False
    for code, value in _parts(resource):
        if _has(code, rules, LOINC, sup.gene_studied_loinc) and (
            _has(value, rules, HGNC, gene_hgnc)
            or any(text.strip().upper() == "FOXP3" for _, _, text in _values(value))
        ):
            is_foxp3 = True
    if not is_foxp3:
        return
    negative = any(
        _has(code, rules, LOINC, sup.variant_assessment_loinc)
        and any(c == sup.absent_answer for _, c, _ in _values(value))
        for code, value in _parts(resource)
    ) or any(
        c in sup.negative_interpretations
        for item in resource.get("interpretation") or []
        for _, c, _ in _values(item)
    )
    when = observation.effective.date
    if negative:
        findings.foxp3_negative = make_evidence(
            reference=observation.reference,
            description="FOXP3 genetic testing: no pathogenic variant found",
            label=f"LOINC {sup.gene_studied_loinc} = {sup.gene_hgnc}",
            onset=when,
            onset_source=observation.effective.source,
            birth=record.patient.birth_date,
            as_of=as_of,
        )
        return
    findings.suppression.append(
        SuppressionFinding(
            "result",
            observation.reference,
            f"FOXP3 genetic testing is already reported ({when or 'undated'}); "
            "review that result instead",
        )
    )


def _foxp3_orders(
    orders: Iterable[OrderFact], rules: RuleSet, as_of: dt.date,
    order_code: tuple[str, str] | None, findings: Findings,
) -> None:
    for order in orders:
        if order.status in _INACTIVE_ORDER:
            continue
        if order.authored is not None and order.authored > as_of:
            continue
        by_text = rules.names_ordered_test([order.text, *(c.display for c in order.codings)])
        by_code = order_code is not None and any(
            (c.system, c.code) == order_code for c in order.codings
        )
        if by_text or by_code:
            findings.suppression.append(
                SuppressionFinding(
                    "order",
                    order.reference,
                    "genetic testing for IPEX or IPEX-like disease is already ordered "
                    f"(ServiceRequest status {order.status}"
                    f"{', ' + order.authored.isoformat() if order.authored else ''})",
                )
            )


def find(
    record: PatientRecord,
    rules: RuleSet,
    *,
    as_of: dt.date,
    order_code: tuple[str, str] | None = None,
) -> Findings:
    """Find the criteria, supporting features and suppressions in one patient's record."""
    from .labs import add_lab_findings

    findings = Findings()
    _condition_findings(record, rules, as_of, findings)
    for observation in record.observations:
        _foxp3_result(observation, record, rules, as_of, findings)
    add_lab_findings(record, rules, as_of=as_of, findings=findings)
    _foxp3_orders(record.orders, rules, as_of, order_code, findings)
    for unread in record.unread:
        findings.not_counted.append(NotCounted(unread.reference, "entry", unread.reason))
    return findings
