"""Lab evidence from LOINC-coded Observations (rules section 2, "Labs").

The lab definitions live in ``fhir_profiles/rules/ipex-lab-rules.json`` and reach
this module, parsed and checked, as ``RuleSet.lab_rules``. Each result is read on
the Observation itself or on a panel's components and judged by :mod:`.lab_values`.
Diabetes and thyroid disease from labs need two kinds of result (a combination);
the criterion begins when both have been shown, i.e. at the later of the earliest
result of each kind. A met combination can be read two ways (the criterion from
labs, or its antibody as a supporting feature): :func:`read_labs` returns both and
:mod:`.screen` chooses. What is skipped, and why, is listed as not counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .dates import describe_age
from .evidence import Evidence, Findings, NotCounted, make_evidence
from .facts import ObservationFact, ObservationPart, PatientRecord
from .lab_rules import Combination, LabDefinition, LabRules
from .lab_values import LabContext, LabResult, judge
from .ruleset import Category, RuleSet
from .terminology import LOINC

_IGNORED_STATUS = frozenset({"entered-in-error", "cancelled"})


@dataclass(frozen=True, slots=True)
class MetCombination:
    """A lab combination whose parts are all positive, and its two readings."""

    combination: Combination
    category: Category
    as_criterion: tuple[Evidence, ...]
    as_supporting: tuple[tuple[Category, Evidence], ...]
    unused_as_supporting: tuple[NotCounted, ...]


@dataclass(slots=True)
class LabReading:
    """What a child's labs show: direct evidence, and the combinations to choose for."""

    direct: list[tuple[Category, Evidence]] = field(default_factory=list)
    combinations: list[MetCombination] = field(default_factory=list)
    not_counted: list[NotCounted] = field(default_factory=list)
    shown: list[Evidence] = field(default_factory=list)

    def apply(self, findings: Findings, criterion_from_labs: tuple[bool, ...]) -> None:
        """Add this reading to ``findings``, each met combination read as chosen."""
        for category, evidence in self.direct:
            findings.add(category, evidence)
        for met, as_criterion in zip(self.combinations, criterion_from_labs, strict=True):
            if as_criterion:
                for evidence in met.as_criterion:
                    findings.add(met.category, evidence)
            else:
                for category, evidence in met.as_supporting:
                    findings.add(category, evidence)
                findings.not_counted.extend(met.unused_as_supporting)
        findings.not_counted.extend(self.not_counted)
        findings.shown.extend(self.shown)


# --- the Observations --------------------------------------------------------------


def _lab_parts(
    observation: ObservationFact, rules: RuleSet, lab_rules: LabRules
) -> Iterator[tuple[LabDefinition, str, ObservationPart]]:
    """(lab, LOINC code, part holding the value) of the Observation and its components."""
    for part in observation.parts:
        for coding in part.code.codings:
            lab = lab_rules.by_code.get(coding.code)
            if lab is not None and rules.aliases.canonical(coding.system) == LOINC:
                yield lab, coding.code, part
                break


def _what(result: LabResult) -> str:
    return f"{result.lab.display} (LOINC {result.code})"


def _evidence(ctx: LabContext, result: LabResult, *, detail: str) -> Evidence:
    observation = result.observation
    return make_evidence(
        reference=observation.reference,
        description=f"{result.lab.display} {result.value_text}".strip(),
        label=f"LOINC {result.code}",
        onset=observation.effective.date,
        onset_source=observation.effective.source,
        birth=ctx.birth,
        as_of=ctx.as_of,
        detail=detail,
    )


def _bound(result: LabResult, as_of: dt.date) -> dt.date:
    return result.when or as_of


def _earliest(results: list[LabResult], as_of: dt.date) -> LabResult:
    return min(results, key=lambda r: (_bound(r, as_of), r.observation.reference))


def _later_note(results: list[LabResult], chosen: LabResult) -> str:
    others = len({r.observation.reference for r in results} - {chosen.observation.reference})
    if not others:
        return ""
    return f"; {others} later result{'s' if others > 1 else ''} also positive"


def _read_all(
    record: PatientRecord, rules: RuleSet, ctx: LabContext, reading: LabReading
) -> list[LabResult]:
    results = []
    for observation in record.observations:
        parts = list(_lab_parts(observation, rules, ctx.rules))
        if not parts:
            continue
        status = observation.status
        on = observation.effective.date
        skip = None
        if status in _IGNORED_STATUS:
            skip = f"status is {status}"
        elif on is not None and on > ctx.as_of:
            skip = "taken after the screening date"
        for lab, code, part in parts:
            what = f"{lab.display} (LOINC {code})"
            if skip is not None:
                reading.not_counted.append(NotCounted(observation.reference, what, skip))
                continue
            results.append(judge(ctx, lab, code, observation, part))
    return results


def _shown(ctx: LabContext, shown: list[LabResult]) -> list[Evidence]:
    """Out-of-range results, and the latest result, of each shown lab."""
    by_lab: dict[str, list[LabResult]] = {}
    for result in shown:
        by_lab.setdefault(result.lab.id, []).append(result)
    found = []
    for results in by_lab.values():
        latest = max(results, key=lambda r: (_bound(r, ctx.as_of), r.observation.reference))
        for result in results:
            if result.flag is not None or result is latest:
                how = "" if result.flag is None and "range" not in result.how else result.how
                detail = f"{how}; shown, not scored" if how else "shown, not scored"
                found.append(_evidence(ctx, result, detail=detail))
    return found


def _met(
    ctx: LabContext, combination: Combination, category: Category,
    hits: Mapping[str, list[LabResult]], supporting: Mapping[str, Category],
) -> MetCombination:
    """Both readings of a met combination: the criterion, or the antibody as a feature."""
    as_of = ctx.as_of
    firsts = {need: _earliest(results, as_of) for need, results in hits.items()}
    met_on = max(_bound(r, as_of) for r in firsts.values())
    age = f", age {describe_age(ctx.birth, met_on)}" if ctx.birth else ""
    as_criterion = []
    for need, first in firsts.items():
        evidence = _evidence(
            ctx, first,
            detail=(f"{first.how}{_later_note(hits[need], first)}; "
                    f"{combination.display}, both shown by {met_on.isoformat()}{age}"),
        )
        # The lab criterion begins when both kinds of result exist.
        as_criterion.append(dataclasses.replace(evidence, onset_bound=met_on))
    as_supporting: list[tuple[Category, Evidence]] = []
    unused: list[NotCounted] = []
    for results in hits.values():
        otherwise = results[0].lab.otherwise
        if otherwise is not None:
            first = _earliest(results, as_of)
            as_supporting.append((supporting[otherwise], _evidence(
                ctx, first, detail=f"{first.how}{_later_note(results, first)}")))
            continue
        for result in results:
            unused.append(NotCounted(
                result.observation.reference, _what(result),
                f"{result.value_text}: {result.how}; not made into {category.id} from labs: "
                "the positive antibody counts as a supporting feature instead (labs make a "
                "criterion only where the coded record does not already show it)"))
    return MetCombination(combination, category, tuple(as_criterion), tuple(as_supporting),
                          tuple(unused))


def read_labs(record: PatientRecord, rules: RuleSet, *, as_of: dt.date) -> LabReading:
    """Read the criteria and supporting features that the record's labs show."""
    reading = LabReading()
    lab_rules = rules.lab_rules
    if lab_rules is None:
        return reading
    ctx = LabContext(lab_rules, rules.aliases, record.patient.birth_date, as_of)
    categories = {key: rules.category(owner) for key, owner in lab_rules.categories.items()}
    by_part: dict[str, list[LabResult]] = {}
    by_evidence: dict[str, list[LabResult]] = {}
    shown: list[LabResult] = []
    for result in _read_all(record, rules, ctx, reading):
        lab = result.lab
        if lab.positivity == "shown":
            if result.value_text:
                shown.append(result)
            else:
                reading.not_counted.append(
                    NotCounted(result.observation.reference, _what(result), result.how))
            continue
        if result.positive is not True:
            reason = result.how if result.positive is None else f"not positive: {result.how}"
            if result.value_text:
                reason = f"{result.value_text}: {reason}"
            reading.not_counted.append(
                NotCounted(result.observation.reference, _what(result), reason))
            continue
        if lab.part is not None:
            by_part.setdefault(lab.part, []).append(result)
        elif lab.evidence is not None:
            by_evidence.setdefault(lab.evidence, []).append(result)

    for combination in lab_rules.combinations:
        hits = {need: by_part.get(need, []) for need in combination.needs}
        if all(hits.values()):
            reading.combinations.append(
                _met(ctx, combination, categories[combination.id], hits, categories))
            continue
        for results in hits.values():
            for result in results:
                if result.lab.otherwise is not None:
                    by_evidence.setdefault(result.lab.otherwise, []).append(result)
                else:
                    reading.not_counted.append(NotCounted(
                        result.observation.reference, _what(result),
                        f"{result.value_text}: {result.how}, but {combination.missing}"))

    for evidence_id, results in by_evidence.items():
        first = _earliest(results, as_of)
        reading.direct.append((categories[evidence_id], _evidence(
            ctx, first, detail=f"{first.how}{_later_note(results, first)}")))
    reading.shown = _shown(ctx, shown)
    return reading
