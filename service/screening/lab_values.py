"""One lab value, judged as the rules say (section 2, "Labs").

A value is read from ``valueQuantity``, ``valueCodeableConcept`` or ``valueString``
and judged in the rules' order: glucose and HbA1c by the ADA thresholds, always, in
their own scale; everything else by the Observation's own age-appropriate
``referenceRange``, else its ``interpretation`` (or a coded positive/negative value),
else the default limit of the lab rules, else it is not used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from .dates import AgeLimit, InvalidDate, date_after
from .facts import Concept, ObservationFact, ObservationPart, Quantity, ReferenceRange
from .lab_rules import LabDefinition, LabRules, Scale, Threshold
from .terminology import SystemAliases
from .units import UnitError

UCUM = "http://unitsofmeasure.org"
_LOWERING = frozenset({"<", "<="})
_RAISING = frozenset({">", ">="})
_NORMAL_RANGE_CODES = frozenset({"normal"})


@dataclass(frozen=True, slots=True)
class LabResult:
    """One lab value as read, and what it says."""

    lab: LabDefinition
    code: str
    observation: ObservationFact
    value_text: str
    positive: bool | None
    how: str
    flag: str | None = None  # shown labs: "below", "above" or "abnormal" when flagged

    @property
    def when(self) -> dt.date | None:
        return self.observation.effective.date


@dataclass(frozen=True, slots=True)
class LabContext:
    rules: LabRules
    aliases: SystemAliases
    birth: dt.date | None
    as_of: dt.date


# --- judging values --------------------------------------------------------------


def _codes(concept: Concept | None) -> Iterator[tuple[str, str, str]]:
    """(system, code, display) of a concept's codings."""
    if concept is not None:
        for c in concept.codings:
            yield c.system, c.code, c.display or ""


def _compare(threshold: Threshold, value: float, comparator: str | None) -> bool | None:
    """Whether a value meets a threshold; None when a comparator leaves it open."""
    met = threshold.met(value)
    upward = threshold.op in (">", ">=")
    if comparator in _LOWERING:
        # The true value is at most ``value``: a miss is certain, a hit is not.
        return (None if met else False) if upward else (True if met else None)
    if comparator in _RAISING:
        return (True if met else None) if upward else (None if met else False)
    return met


def _to_scale(
    ctx: LabContext, lab: LabDefinition, unit: str
) -> tuple[Scale, float] | None:
    """The scale a unit belongs to and the factor into it, or None."""
    if not unit:
        return None
    spelled = ctx.rules.spell(lab, unit)
    converter = ctx.rules.converter
    for scale in lab.scales:
        try:
            factor = converter.factor(spelled, scale.unit)
        except UnitError:
            continue
        if not lab.convert_between_scales and abs(factor - 1.0) > 1e-9:
            continue  # e.g. HbA1c % and mmol/mol: two scales, not a conversion
        return scale, factor
    return None


def _molar_equivalent(ctx: LabContext, lab: LabDefinition, scale: Scale, value: float) -> str:
    """The same value in the lab's other scale through the molar mass (mg/dL <-> mmol/L)."""
    if lab.molar_mass is None:
        return ""
    converter = ctx.rules.converter
    for other in lab.scales:
        for source, target, bridge in (
            ("g/L", "mol/L", 1.0 / lab.molar_mass),
            ("mol/L", "g/L", lab.molar_mass),
        ):
            if converter.convertible(scale.unit, source) and converter.convertible(
                other.unit, target
            ):
                equivalent = (
                    value * converter.factor(scale.unit, source) * bridge
                    / converter.factor(other.unit, target)
                )
                return f"{equivalent:.3g} {other.unit}"
    return ""


def _age_words(limit: AgeLimit) -> str:
    words = limit.describe()
    return words[:-1] if limit.value == 1 and words.endswith("s") else words


def _scales_text(lab: LabDefinition) -> str:
    return " or ".join(f"{s.unit} ({s.name})" for s in lab.scales)


def _range_applies(ref: ReferenceRange, ctx: LabContext, on: dt.date | None) -> bool | None:
    """True when a referenceRange's age band holds the patient's age; None with no age."""
    if not ref.has_age:
        return None
    if ctx.birth is None or on is None:
        return False
    try:
        for bound, is_high in ((ref.age_low, False), (ref.age_high, True)):
            if bound is None:
                continue
            if bound.unit is None:
                return False
            # An age range is inclusive in whole units: "0-5 months" holds 5 months 29 days.
            limit = date_after(ctx.birth, bound.value + (1 if is_high else 0), bound.unit)
            if (on >= limit) if is_high else (on < limit):
                return False
    except (InvalidDate, OverflowError, ValueError):
        return False
    return True


def _normal_range(ref: ReferenceRange) -> bool:
    if ref.type is None:
        return True
    return any(code in _NORMAL_RANGE_CODES for _, code, _ in _codes(ref.type))


def _range_bound(
    ctx: LabContext, lab: LabDefinition, bound: Quantity | None, unit: str
) -> float | None:
    """A range limit in the value's own unit (converted when the range has another)."""
    if bound is None:
        return None
    bound_unit = bound.unit_code
    if not bound_unit or not unit:
        return bound.value
    mine, theirs = ctx.rules.spell(lab, unit), ctx.rules.spell(lab, bound_unit)
    if mine == theirs:
        return bound.value
    try:
        return bound.value * ctx.rules.converter.factor(theirs, mine)
    except UnitError:
        return None


def _reference_range(
    ctx: LabContext, lab: LabDefinition, part: ObservationPart, on: dt.date | None
) -> Iterator[tuple[float | None, float | None, str]]:
    """Usable (low, high, text) of the age-appropriate ranges, best first."""
    aged: list[ReferenceRange] = []
    plain: list[ReferenceRange] = []
    for ref in part.reference_range:
        if _normal_range(ref):
            applies = _range_applies(ref, ctx, on)
            if applies is not False:
                (aged if applies else plain).append(ref)
    unit = part.value_quantity.unit_code if part.value_quantity is not None else ""
    for ref in (*aged, *plain):
        low = _range_bound(ctx, lab, ref.low, unit)
        high = _range_bound(ctx, lab, ref.high, unit)
        if low is None and high is None:
            continue
        shown = f"{low:g}" if low is not None else ""
        shown += "-" + (f"{high:g}" if high is not None else "")
        yield low, high, f"{shown} {unit}".strip()


def _interpretation(
    ctx: LabContext, lab: LabDefinition, part: ObservationPart
) -> tuple[bool | None, str]:
    table = ctx.rules.interpretations["below" if lab.direction == "below" else "above"]
    for concept in part.interpretation:
        for system, code, _ in _codes(concept):
            if system and system not in table.systems:
                continue
            if code in table.positive:
                return True, f"interpretation {code}"
            if code in table.negative:
                return False, f"interpretation {code}"
    return None, ""


def _coded_value(ctx: LabContext, part: ObservationPart) -> tuple[bool | None, str]:
    coded = ctx.rules.coded_values
    concept = part.value_concept
    texts: list[str] = []
    for system, code, display in _codes(concept):
        key = (ctx.aliases.canonical(system), code)
        if key in coded.positive:
            return True, f"coded value {display or code}"
        if key in coded.negative:
            return False, f"coded value {display or code}"
        texts.append(display)
    if concept is not None and concept.text:
        texts.append(concept.text)
    if part.value_string is not None:
        texts.append(part.value_string)
    for text in texts:
        word = text.strip().lower()
        if word in coded.positive_text:
            return True, f"value '{text.strip()}'"
        if word in coded.negative_text:
            return False, f"value '{text.strip()}'"
    return None, ""


def _value_text(value: float, unit: str, comparator: str | None) -> str:
    return f"{comparator or ''}{value:g} {unit}".strip()


def _judge_quantity(
    ctx: LabContext,
    lab: LabDefinition,
    code: str,
    observation: ObservationFact,
    part: ObservationPart,
    quantity: Quantity,
) -> LabResult:
    value = quantity.value
    unit = quantity.unit_code
    comparator = quantity.comparator
    human = quantity.unit
    text = _value_text(value, human if human and human.strip() else unit, comparator)
    on = observation.effective.date
    scaled = _to_scale(ctx, lab, unit)
    if scaled is not None:
        scale, factor = scaled
        also = [f"{value * factor:.4g} {scale.unit}"] if abs(factor - 1.0) > 1e-9 else []
        equivalent = _molar_equivalent(ctx, lab, scale, value * factor)
        also += [equivalent] if equivalent else []
        if also:
            text += f" (= {' = '.join(also)})"

    def done(positive: bool | None, how: str, flag: str | None = None) -> LabResult:
        return LabResult(lab, code, observation, text, positive, how, flag)

    unconverted = (
        f"unit '{unit or '(none)'}' does not convert to {_scales_text(lab)}"
        if scaled is None else None
    )

    if lab.positivity == "fixed":
        if scaled is None:
            return done(None, f"{unconverted}; the ADA thresholds cannot be applied")
        scale, factor = scaled
        assert scale.threshold is not None
        verdict = _compare(scale.threshold, value * factor, comparator)
        rule = f"ADA threshold {scale.threshold.describe(scale.unit)}"
        if verdict is None:
            return done(None, f"a {comparator} value cannot be judged against the {rule}")
        return done(verdict, ("at or above the " if verdict else "below the ") + rule)

    if lab.positivity == "shown":
        for low, high, range_text in _reference_range(ctx, lab, part, on):
            if low is not None and value < low:
                return done(None, f"below the lab's reference range ({range_text})", "below")
            if high is not None and value > high:
                return done(None, f"above the lab's reference range ({range_text})", "above")
            return done(None, f"within the lab's reference range ({range_text})")
        flags = ctx.rules.interpretations
        for concept in part.interpretation:
            for _, interp, _ in _codes(concept):
                if interp in flags["below"].positive:
                    return done(None, f"interpretation {interp}", "below")
                if interp in flags["above"].positive:
                    return done(None, f"interpretation {interp}", "abnormal")
        return done(None, "shown, not scored")

    # Ordered positivity: the lab's own range, then interpretation, then the default.
    upward = lab.direction != "below"
    for low, high, range_text in _reference_range(ctx, lab, part, on):
        bound = high if upward else low
        if bound is None:
            continue
        verdict = _compare(Threshold(">" if upward else "<", bound), value, comparator)
        if verdict is None:
            break
        side = "above" if upward else "below"
        return done(
            verdict,
            f"{side if verdict else 'not ' + side} the lab's reference range ({range_text})",
        )
    verdict, how = _interpretation(ctx, lab, part)
    if verdict is not None:
        return done(verdict, how)
    if scaled is None:
        return done(None, f"{unconverted}, and no usable reference range or interpretation")
    scale, factor = scaled
    threshold, band = scale.limit_for(ctx.birth, on)
    if threshold is None:
        if scale.by_age and ctx.birth is None:
            why = "no birth date, so the age-specific limit is unknown"
        elif scale.by_age and on is None:
            why = "no date, so the age-specific limit is unknown"
        elif band:
            why = f"no default limit for age {band}"
        else:
            why = "no default limit in the lab rules"
        return done(None, f"{why}, and no usable reference range or interpretation")
    verdict = _compare(threshold, value * factor, comparator)
    where = f" for age {band}" if band else ""
    rule = f"the default limit {threshold.describe(scale.unit)}{where}"
    if verdict is None:
        return done(None, f"a {comparator} value cannot be judged against {rule}")
    if upward:
        return done(verdict, ("above " if verdict else "within ") + rule)
    return done(verdict, ("below " if verdict else "not below ") + rule)


def judge(
    ctx: LabContext,
    lab: LabDefinition,
    code: str,
    observation: ObservationFact,
    part: ObservationPart,
) -> LabResult:
    def done(positive: bool | None, how: str, text: str = "") -> LabResult:
        return LabResult(lab, code, observation, text, positive, how)

    on = observation.effective.date
    if lab.counts_from_age is not None and ctx.birth is not None and on is not None:
        if on < lab.counts_from_age.date_reached(ctx.birth):
            return done(
                None,
                f"taken before the age of {_age_words(lab.counts_from_age)} (neonatal values: "
                "the physiological surge or a congenital cause), not counted",
            )
    if part.value_quantity is not None:
        return _judge_quantity(ctx, lab, code, observation, part, part.value_quantity)
    concept = part.value_concept
    if concept is not None or part.value_string is not None:
        text = ""
        for _, value_code, display in _codes(concept):
            text = display or value_code
            break
        text = text or part.value_string or (concept.text if concept is not None else "") or ""
        if lab.positivity == "fixed":
            return done(None, "a coded value cannot be compared with the ADA thresholds", text)
        if lab.positivity == "shown":
            return done(None, "shown, not scored", text)
        verdict, how = _interpretation(ctx, lab, part)
        if verdict is None:
            verdict, how = _coded_value(ctx, part)
        if verdict is None:
            return done(None, "a coded value that is neither positive nor negative", text)
        return done(verdict, how, text)
    why = "no value"
    for _, reason, display in _codes(part.data_absent):
        why = f"no value (dataAbsentReason {display or reason})"
        break
    if part.value_quantity is None and not part.interpretation:
        return done(None, why)
    verdict, how = _interpretation(ctx, lab, part)
    if verdict is None:
        return done(None, why)
    return done(verdict, how)
