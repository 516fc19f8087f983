"""The lab rules (``fhir_profiles/rules/ipex-lab-rules.json``) as typed, checked data.

:func:`parse_lab_rules` runs once at start. It checks every field, that each scale
unit is UCUM, that ``readCodes`` lists exactly the codes the labs read, that two
scales of one lab with a molar mass give the same threshold, and that every lab
evidence id the screening rules name is produced here (and no other). A problem
raises :class:`LabRulesError` naming the lab and the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from .dates import AgeLimit
from .rule_documents import (
    AgeDoc,
    CodedValuesDoc,
    InterpretationDoc,
    LabDoc,
    LabRulesDoc,
    ScaleDoc,
    ThresholdDoc,
)
from .units import UnitConverter, UnitError, normalise_unit, shared_converter

Direction = Literal["above", "below", "both"]
Positivity = Literal["fixed", "ordered", "shown"]
_MOLAR_AGREEMENT = 0.01  # paired mass/molar thresholds must agree within 1 %


class LabRulesError(ValueError):
    """The lab rule file is inconsistent; the service must not start."""


@dataclass(frozen=True, slots=True)
class Threshold:
    op: str
    value: float

    def met(self, value: float) -> bool:
        if self.op == ">":
            return value > self.value
        if self.op == ">=":
            return value >= self.value
        if self.op == "<":
            return value < self.value
        return value <= self.value

    def describe(self, unit: str) -> str:
        return f"{self.op} {self.value:g} {unit}"


@dataclass(frozen=True, slots=True)
class AgeBand:
    """A default limit that applies from an age (inclusive) until the next band."""

    starts: AgeLimit
    threshold: Threshold | None
    label: str


@dataclass(frozen=True, slots=True)
class Scale:
    """One unit a lab is compared in, with its default limit (fixed or by age)."""

    name: str
    unit: str
    threshold: Threshold | None
    by_age: tuple[AgeBand, ...] = ()

    def limit_for(
        self, birth: dt.date | None, on: dt.date | None
    ) -> tuple[Threshold | None, str | None]:
        """The default limit for a result taken on ``on`` (with the age band's label)."""
        if not self.by_age:
            return self.threshold, None
        if birth is None or on is None:
            return None, None
        chosen: AgeBand | None = None
        for band in self.by_age:
            if band.starts.date_reached(birth) <= on:
                chosen = band
        if chosen is None:
            return None, None
        return chosen.threshold, chosen.label


@dataclass(frozen=True, slots=True)
class LabDefinition:
    id: str
    display: str
    codes: frozenset[str]
    positivity: Positivity
    direction: Direction
    scales: tuple[Scale, ...]
    convert_between_scales: bool
    molar_mass: float | None
    unit_aliases: Mapping[str, str]
    counts_from_age: AgeLimit | None
    part: str | None
    otherwise: str | None
    evidence: str | None


@dataclass(frozen=True, slots=True)
class Combination:
    """Lab evidence that needs results of several parts (e.g. hyperglycemia + antibody)."""

    id: str
    display: str
    needs: tuple[str, ...]
    missing: str
    yields_to_coded_evidence: bool = False


@dataclass(frozen=True, slots=True)
class Interpretations:
    systems: frozenset[str]
    positive: frozenset[str]
    negative: frozenset[str]


@dataclass(frozen=True, slots=True)
class CodedValues:
    positive: frozenset[tuple[str, str]]
    negative: frozenset[tuple[str, str]]
    positive_text: frozenset[str]
    negative_text: frozenset[str]


@dataclass(frozen=True, slots=True)
class LabRules:
    """Everything the lab reader needs, looked up by LOINC code."""

    version: str
    labs: tuple[LabDefinition, ...]
    by_code: Mapping[str, LabDefinition]
    combinations: tuple[Combination, ...]
    interpretations: Mapping[str, Interpretations]
    coded_values: CodedValues
    unit_aliases: Mapping[str, str]
    categories: Mapping[str, str]  # lab evidence id -> the category id it gives
    read_codes: frozenset[str]
    converter: UnitConverter

    def spell(self, lab: LabDefinition, unit: str) -> str:
        """The UCUM spelling of a unit as a lab sent it (aliases applied)."""
        clean = normalise_unit(unit)
        return lab.unit_aliases.get(clean) or self.unit_aliases.get(clean) or clean


# --- parsing -------------------------------------------------------------------


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                     for err in exc.errors()[:8])


def _aliases(value: Mapping[str, str]) -> dict[str, str]:
    return {normalise_unit(k): v for k, v in value.items()}


def _age(value: AgeDoc) -> AgeLimit:
    return AgeLimit(value.value, value.unit)


def _threshold(value: ThresholdDoc | None) -> Threshold | None:
    return Threshold(value.op, value.value) if value is not None else None


def _scale(doc: ScaleDoc, converter: UnitConverter, where: str) -> Scale:
    try:
        converter.check(doc.unit)
    except UnitError as exc:
        raise LabRulesError(f"{where}: {exc}") from None
    bands = []
    previous: float | None = None
    for i, band in enumerate(doc.by_age):
        at = f"{where}.byAge[{i}]"
        starts = _age(band.start)
        # Compare band starts in days on a fixed birth date: the order must rise.
        days = (starts.date_reached(dt.date(2000, 1, 1)) - dt.date(2000, 1, 1)).days
        if previous is not None and days <= previous:
            raise LabRulesError(f"{at}: age bands must be in rising order")
        previous = days
        bands.append(AgeBand(starts, _threshold(band.threshold), band.label))
    threshold = _threshold(doc.threshold)
    if threshold is not None and bands:
        raise LabRulesError(f"{where}: give either 'threshold' or 'byAge', not both")
    return Scale(doc.name or doc.unit, doc.unit, threshold, tuple(bands))


def _check_molar_pairs(lab: LabDefinition, converter: UnitConverter, where: str) -> None:
    """Paired mass and molar thresholds (126 mg/dL, 7.0 mmol/L) must mean the same."""
    if lab.molar_mass is None:
        return
    mass = [s for s in lab.scales if s.threshold and converter.convertible(s.unit, "g/L")]
    molar = [s for s in lab.scales if s.threshold and converter.convertible(s.unit, "mol/L")]
    if not mass or not molar:
        raise LabRulesError(f"{where}: a molarMass needs one mass and one molar scale")
    for m in mass:
        for n in molar:
            assert m.threshold is not None and n.threshold is not None
            grams = m.threshold.value * converter.factor(m.unit, "g/L")
            moles = n.threshold.value * converter.factor(n.unit, "mol/L")
            if abs(grams / lab.molar_mass - moles) > _MOLAR_AGREEMENT * moles:
                raise LabRulesError(
                    f"{where}: {m.threshold.describe(m.unit)} and "
                    f"{n.threshold.describe(n.unit)} disagree at molar mass {lab.molar_mass}"
                )


def _lab(doc: LabDoc, converter: UnitConverter, where: str) -> LabDefinition:
    where = f"{where} '{doc.id}'"
    if not doc.scales and doc.positivity != "ordered":
        # A presence test (an antibody reported positive) is judged by its interpretation
        # or coded value alone: an ordered lab may have no scale.
        raise LabRulesError(f"{where}: needs at least one scale")
    scales = tuple(_scale(s, converter, f"{where}.scales[{i}]") for i, s in enumerate(doc.scales))
    if doc.positivity == "fixed" and any(s.threshold is None for s in scales):
        raise LabRulesError(f"{where}: fixed positivity needs a threshold on every scale")
    lab = LabDefinition(
        id=doc.id,
        display=doc.display,
        codes=frozenset(doc.codes),
        positivity=doc.positivity,
        direction=doc.direction,
        scales=scales,
        convert_between_scales=doc.convert_between_scales,
        molar_mass=doc.molar_mass,
        unit_aliases=_aliases(doc.unit_aliases),
        counts_from_age=_age(doc.counts_from_age) if doc.counts_from_age else None,
        part=doc.part or None,
        otherwise=doc.otherwise or None,
        evidence=doc.evidence or None,
    )
    if doc.positivity == "shown" and (lab.part or lab.evidence or lab.otherwise):
        raise LabRulesError(f"{where}: a shown lab is not scored (no part or evidence)")
    if doc.positivity != "shown" and not (lab.part or lab.evidence):
        raise LabRulesError(f"{where}: a scored lab needs a 'part' or an 'evidence' id")
    _check_molar_pairs(lab, converter, where)
    return lab


def _interpretations(doc: InterpretationDoc) -> dict[str, Interpretations]:
    result = {}
    for direction, side in (("above", doc.above), ("below", doc.below)):
        positive, negative = frozenset(side.positive), frozenset(side.negative)
        if positive & negative:
            raise LabRulesError(f"interpretation.{direction}: {sorted(positive & negative)} "
                                "are on both sides")
        result[direction] = Interpretations(frozenset(doc.systems), positive, negative)
    return result


def _coded_values(doc: CodedValuesDoc) -> CodedValues:
    positive = frozenset((c.system, c.code) for c in doc.positive)
    negative = frozenset((c.system, c.code) for c in doc.negative)
    if positive & negative:
        raise LabRulesError("codedValues: a code is both positive and negative")
    return CodedValues(
        positive=positive,
        negative=negative,
        positive_text=frozenset(t.lower() for t in doc.positive_text),
        negative_text=frozenset(t.lower() for t in doc.negative_text),
    )


def parse_lab_rules(
    doc: Mapping[str, Any],
    *,
    categories: Mapping[str, str],
    converter: UnitConverter | None = None,
) -> LabRules:
    """Build and check the lab rules; ``categories``: lab evidence id -> its category id."""
    converter = converter or shared_converter()
    try:
        parsed = LabRulesDoc.model_validate(doc)
    except ValidationError as exc:
        raise LabRulesError(f"the lab rules do not match their schema: {_problems(exc)}"
                            ) from None
    labs = tuple(_lab(item, converter, f"labs[{i}]") for i, item in enumerate(parsed.labs))
    if len({lab.id for lab in labs}) != len(labs):
        raise LabRulesError("labs: ids must be unique")
    by_code: dict[str, LabDefinition] = {}
    for lab in labs:
        for code in lab.codes:
            if code in by_code:
                raise LabRulesError(
                    f"LOINC {code} is in both '{by_code[code].id}' and '{lab.id}': "
                    "one code, one meaning"
                )
            by_code[code] = lab

    combinations = tuple(
        Combination(c.id, c.display, c.needs, c.missing, c.yields_to_coded_evidence)
        for c in parsed.combinations
    )
    parts = {need for c in combinations for need in c.needs}
    for lab in labs:
        if lab.part is not None and lab.part not in parts:
            raise LabRulesError(f"lab '{lab.id}': part '{lab.part}' is in no combination")
    for combination in combinations:
        for need in combination.needs:
            if not any(lab.part == need for lab in labs):
                raise LabRulesError(f"combination '{combination.id}': no lab gives '{need}'")

    produced = (
        {c.id for c in combinations}
        | {lab.evidence for lab in labs if lab.evidence}
        | {lab.otherwise for lab in labs if lab.otherwise}
    )
    unknown = produced - set(categories)
    if unknown:
        raise LabRulesError(
            f"lab evidence {sorted(unknown)} is named by no category's labEvidence in the "
            "screening rules"
        )
    unproduced = set(categories) - produced
    if unproduced:
        raise LabRulesError(f"labEvidence {sorted(unproduced)} is produced by no lab rule")

    global_aliases = _aliases(parsed.unit_aliases)
    for lab in labs:
        for alias, target in {**global_aliases, **lab.unit_aliases}.items():
            try:
                converter.check(target)  # also warms the cache for the spellings labs send
            except UnitError as exc:
                raise LabRulesError(f"lab '{lab.id}': unit alias '{alias}': {exc}") from None

    derived = frozenset(by_code)
    declared = frozenset(parsed.read_codes)
    if declared != derived:
        missing, extra = sorted(derived - declared), sorted(declared - derived)
        raise LabRulesError(
            "readCodes must list exactly the codes of the labs"
            + (f"; missing {missing}" if missing else "")
            + (f"; not in any lab {extra}" if extra else "")
        )
    return LabRules(
        version=parsed.version,
        labs=labs,
        by_code=by_code,
        combinations=combinations,
        interpretations=_interpretations(parsed.interpretation),
        coded_values=_coded_values(parsed.coded_values),
        unit_aliases=global_aliases,
        categories=dict(categories),
        read_codes=derived,
        converter=converter,
    )
