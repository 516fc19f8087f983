"""Findings from the coded record: criteria, supporting features, causes, suppression.

Conditions are classified by the rule set's ValueSets; each source's conditions
(onset limits, persistence, explaining causes) decide whether a coded diagnosis
counts. FOXP3 orders and results decide suppression. Labs are read in :mod:`.labs`;
the two are put together in :mod:`.screen`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from .evidence import (
    ExplainedEvidence,
    Explanation,
    Findings,
    NotCounted,
    SuppressionFinding,
    code_label,
    make_evidence,
)
from .explanations import CauseFact, CauseIndex, DiarrheaCourse, Span, explaining_cause
from .facts import Coding, Concept, ConditionFact, ObservationFact, OrderFact, PatientRecord
from .ruleset import Classification, EvidenceSource, RuleSet
from .terminology import HGNC, LOINC, normalise_code

_INACTIVE_ORDER = frozenset({"revoked", "entered-in-error"})
_IGNORED_OBSERVATION = frozenset({"entered-in-error", "cancelled"})
_RESOLVED = frozenset({"inactive", "resolved", "remission"})


def _describe(coding: Coding, condition: ConditionFact, fallback: str | None) -> str:
    return coding.display or fallback or condition.text or coding.code


def _resolved_without_date(condition: ConditionFact) -> bool:
    return condition.abatement is None and (
        condition.resolved_without_date or condition.clinical_status in _RESOLVED
    )


def _course(condition: ConditionFact, birth: dt.date | None, as_of: dt.date) -> DiarrheaCourse:
    """The diarrhea's start and end: its end is its abatement, or today while active."""
    onset = condition.onset.date
    start = Span.exact(onset) if onset is not None else Span(birth, as_of)
    if condition.abatement is not None:
        end = Span.exact(min(condition.abatement, as_of))
    elif _resolved_without_date(condition):
        end = Span(start.earliest, as_of)
    else:
        end = Span.exact(as_of)
    return DiarrheaCourse(start, end)


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
        elif _resolved_without_date(condition):
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


def _shown_coding(coding: Coding, rules: RuleSet) -> Coding:
    canonical = rules.aliases.canonical(coding.system)
    return Coding(canonical, normalise_code(canonical, coding.code), coding.display)


def _causes(
    conditions: Iterable[ConditionFact], rules: RuleSet, birth: dt.date | None, as_of: dt.date,
    findings: Findings,
) -> list[CauseFact]:
    """Every explaining cause in the record that may explain (confirmed or unrecorded)."""
    found: list[CauseFact] = []
    policy = rules.explanation
    for condition in conditions:
        for coding in condition.codings:
            causes = rules.causes(coding.system, coding.code)
            if not causes:
                continue
            shown = _shown_coding(coding, rules)
            description = _describe(coding, condition, None)
            if not policy.accepts_status(condition.verification_status):
                findings.not_counted.append(NotCounted(
                    condition.reference, description,
                    f"explains no diarrhea: verificationStatus is {condition.verification_status} "
                    "(only a confirmed or unrecorded cause explains)"))
                break
            onset = condition.onset.date
            span = Span.exact(onset) if onset is not None else Span(birth, as_of)
            found.extend(
                CauseFact(cause, condition.reference, description,
                          code_label(shown.system, shown.code), onset, span)
                for cause in causes
            )
            break
    return found


def _condition_findings(
    record: PatientRecord, rules: RuleSet, as_of: dt.date, findings: Findings
) -> None:
    birth = record.patient.birth_date
    current: list[ConditionFact] = []
    for condition in record.conditions:
        first = condition.codings[0] if condition.codings else None
        what = (first.display or condition.text or first.code) if first else "Condition"
        if not condition.counts:
            findings.not_counted.append(
                NotCounted(condition.reference, what,
                           f"verificationStatus is {condition.verification_status}")
            )
        elif condition.onset.date is not None and condition.onset.date > as_of:
            findings.not_counted.append(
                NotCounted(condition.reference, what, "began after the screening date")
            )
        else:
            current.append(condition)
    causes = CauseIndex.of(_causes(current, rules, birth, as_of, findings))

    for condition in current:
        for coding in condition.codings:
            if rules.is_ipex_diagnosis(coding.system, coding.code):
                findings.suppression.append(
                    SuppressionFinding(
                        "diagnosis",
                        condition.reference,
                        f"IPEX is already diagnosed: {_describe(coding, condition, None)} "
                        f"({code_label(coding.system, coding.code)}), recorded "
                        f"{condition.onset.date or 'undated'}",
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
        _count_condition(condition, coding, hit, rules, birth, as_of, causes, findings)


def _count_condition(
    condition: ConditionFact, coding: Coding, hit: Classification, rules: RuleSet,
    birth: dt.date | None, as_of: dt.date, causes: CauseIndex, findings: Findings,
) -> None:
    shown = _shown_coding(coding, rules)
    listed = hit.source.value_set.displays.get((shown.system, shown.code))
    description = _describe(coding, condition, listed or hit.category.display)
    reason, detail = _source_rejects(hit.source, condition, birth, as_of)
    if reason is not None:
        findings.not_counted.append(
            NotCounted(condition.reference, description, f"{hit.category.id}: {reason}")
        )
        return
    evidence = make_evidence(
        reference=condition.reference,
        description=description,
        label=code_label(shown.system, shown.code),
        onset=condition.onset.date,
        onset_source=condition.onset.source,
        birth=birth,
        as_of=as_of,
        detail=detail,
    )
    cause = explaining_cause(hit.source, _course(condition, birth, as_of), causes)
    if cause is not None:
        explanation = Explanation(cause.cause, cause.reference, cause.description,
                                  cause.code_label, cause.onset)
        findings.explained.append(ExplainedEvidence(hit.category, evidence, explanation))
        findings.not_counted.append(NotCounted(
            condition.reference, description, f"{hit.category.id}: {explanation.text()}"))
        return
    findings.add(hit.category, evidence)


def _has(concept: Concept | None, rules: RuleSet, system: str, code: str) -> bool:
    return concept is not None and any(
        rules.aliases.canonical(c.system) == system and normalise_code(system, c.code) == code
        for c in concept.codings
    )


def _foxp3_result(
    observation: ObservationFact, record: PatientRecord, rules: RuleSet, as_of: dt.date,
    findings: Findings,
) -> None:
    sup = rules.suppression
    if observation.status in _IGNORED_OBSERVATION:
        return
    if observation.effective.date is not None and observation.effective.date > as_of:
        return
    gene_hgnc = normalise_code(HGNC, sup.gene_hgnc)
    is_foxp3 = any(
        _has(part.code, rules, LOINC, sup.gene_studied_loinc) and (
            _has(part.value_concept, rules, HGNC, gene_hgnc)
            or any(text.strip().upper() == "FOXP3"
                   for text in (part.value_concept.texts() if part.value_concept else ()))
        )
        for part in observation.parts
    )
    if not is_foxp3:
        return
    negative = any(
        _has(part.code, rules, LOINC, sup.variant_assessment_loinc)
        and part.value_concept is not None
        and any(c.code == sup.absent_answer for c in part.value_concept.codings)
        for part in observation.parts
    ) or any(
        c.code in sup.negative_interpretations
        for concept in observation.interpretation
        for c in concept.codings
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
        by_text = rules.names_ordered_test(order.code.texts())
        by_code = order_code is not None and any(
            (c.system, c.code) == order_code for c in order.code.codings
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
    """Find the coded criteria, supporting features and suppressions of one record."""
    findings = Findings()
    _condition_findings(record, rules, as_of, findings)
    for observation in record.observations:
        _foxp3_result(observation, record, rules, as_of, findings)
    _foxp3_orders(record.orders, rules, as_of, order_code, findings)
    return findings
