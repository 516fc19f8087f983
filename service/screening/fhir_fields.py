"""Field readers: FHIR JSON values into typed facts, each problem kept with its place.

Every reader takes the raw JSON value, the FHIRPath-like location it came from and a
:class:`Problems` list. A value that is present but unusable (a code given as a plain
string, a date that is not a date) is reported there and read as absent; nothing is
dropped in silence. These are the only functions that look at raw CodeableConcepts,
Quantities, dates and Observation components.
"""

from __future__ import annotations

import datetime as dt
import reprlib
from collections.abc import Mapping
from typing import Any

from .dates import InvalidDate, date_after, normalise_age_unit, parse_fhir_date
from .facts import AgeBound, Coding, Concept, ObservationPart, Onset, Quantity, ReferenceRange

_COMPARATORS = frozenset({"<", "<=", ">=", ">"})


class Problems(list[tuple[str, str]]):
    """(location, what is wrong) of everything a reader could not use."""

    def add(self, where: str, reason: str) -> None:
        self.append((where, reason))


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = \
    2, 3, 3, 40, 40


def shown(value: Any) -> str:
    """A value from the record, short and safe to quote however deep it nests."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_shown = shown


def string(value: Any, where: str, problems: Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(where, f"is {_shown(value)}, not a string")
        return None
    return value


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def concept(value: Any, where: str, problems: Problems) -> Concept | None:
    """A CodeableConcept; None when absent or not an object (reported)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(where, f"is {_shown(value)}, not a CodeableConcept")
        return None
    codings: list[Coding] = []
    raw = value.get("coding")
    if raw is not None and not isinstance(raw, list):
        problems.add(f"{where}.coding", f"is {_shown(raw)}, not a list of codings")
        raw = None
    for i, item in enumerate(raw or ()):
        at = f"{where}.coding[{i}]"
        if not isinstance(item, dict):
            problems.add(at, f"is {_shown(item)}, not a Coding")
            continue
        system, code, display = item.get("system"), item.get("code"), item.get("display")
        if not isinstance(code, str) or not code.strip():
            if code is not None:
                problems.add(f"{at}.code", f"is {_shown(code)}, not a code")
            continue
        if not isinstance(system, str) or not system:
            problems.add(f"{at}.system", f"code {code!r} has no system, so it cannot be "
                                         "matched to any code list")
            continue
        codings.append(Coding(system, code, display if isinstance(display, str) else None))
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        problems.add(f"{where}.text", f"is {_shown(text)}, not a string")
        text = None
    return Concept(tuple(codings), text)


def concepts(value: Any, where: str, problems: Problems) -> tuple[Concept, ...]:
    """A list of CodeableConcepts (interpretation, category)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(where, f"is {_shown(value)}, not a list")
        return ()
    found = []
    for i, item in enumerate(value):
        read = concept(item, f"{where}[{i}]", problems)
        if read is not None:
            found.append(read)
    return tuple(found)


def status_code(value: Any, where: str, problems: Problems) -> str | None:
    """The first code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    read = concept(value, where, problems)
    return read.first_code if read is not None else None


def quantity(value: Any, where: str, problems: Problems) -> Quantity | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(where, f"is {_shown(value)}, not a Quantity")
        return None
    amount = number(value.get("value"))
    if amount is None:
        if "value" in value:
            problems.add(f"{where}.value", f"is {_shown(value.get('value'))}, not a number")
        return None
    comparator = value.get("comparator")
    if comparator is not None and comparator not in _COMPARATORS:
        problems.add(f"{where}.comparator", f"{_shown(comparator)} is not <, <=, >= or >")
        return None
    unit, code, system = (string(value.get(k), f"{where}.{k}", problems)
                          for k in ("unit", "code", "system"))
    return Quantity(amount, comparator, unit, code, system)


def date(value: Any, where: str, problems: Problems) -> dt.date | None:
    """A FHIR date or dateTime as its earliest day."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(where, f"is {_shown(value)}, not a date")
        return None
    try:
        return parse_fhir_date(value)
    except InvalidDate:
        problems.add(where, f"{_shown(value)} is not a date (use YYYY, YYYY-MM or YYYY-MM-DD)")
        return None


def age_date(value: Any, birth: dt.date | None, where: str, problems: Problems) -> dt.date | None:
    """The day a FHIR Age (or Range bound) falls on, counted from birth."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(where, f"is {_shown(value)}, not an Age")
        return None
    amount = number(value.get("value"))
    unit = normalise_age_unit(value.get("unit"), value.get("code"))
    if amount is None or amount < 0:
        problems.add(f"{where}.value", f"{_shown(value.get('value'))} is not an age")
        return None
    if unit is None:
        problems.add(f"{where}.unit", f"{_shown(value.get('code') or value.get('unit'))} is "
                                      "not an age unit (a, mo, wk, d)")
        return None
    if birth is None:
        return None  # no birth date: the age cannot be placed (said once, on the Patient)
    try:
        return date_after(birth, amount, unit)
    except (InvalidDate, OverflowError):
        problems.add(where, f"age {amount:g} {unit} is beyond the calendar")
        return None


def onset(resource: Mapping[str, Any], birth: dt.date | None, where: str,
          problems: Problems) -> Onset:
    """A Condition's onset in the order the rules give, else its recordedDate."""
    if "onsetDateTime" in resource:
        day = date(resource["onsetDateTime"], f"{where}.onsetDateTime", problems)
        if day is not None:
            return Onset(day, "onsetDateTime")
    if "onsetAge" in resource:
        day = age_date(resource["onsetAge"], birth, f"{where}.onsetAge", problems)
        if day is not None:
            return Onset(day, "onsetAge")
    period = resource.get("onsetPeriod")
    if isinstance(period, dict) and "start" in period:
        day = date(period["start"], f"{where}.onsetPeriod.start", problems)
        if day is not None:
            return Onset(day, "onsetPeriod.start")
    elif period is not None and not isinstance(period, dict):
        problems.add(f"{where}.onsetPeriod", f"is {_shown(period)}, not a Period")
    onset_range = resource.get("onsetRange")
    if isinstance(onset_range, dict) and "low" in onset_range:
        day = age_date(onset_range["low"], birth, f"{where}.onsetRange.low", problems)
        if day is not None:
            return Onset(day, "onsetRange.low")
    if "recordedDate" in resource:
        day = date(resource["recordedDate"], f"{where}.recordedDate", problems)
        if day is not None:
            return Onset(day, "recordedDate")
    return Onset(None, "none")


def abatement(resource: Mapping[str, Any], birth: dt.date | None, where: str,
              problems: Problems) -> tuple[dt.date | None, bool]:
    """The abatement day (earliest), and whether it resolved with no usable date."""
    if "abatementDateTime" in resource:
        day = date(resource["abatementDateTime"], f"{where}.abatementDateTime", problems)
        return day, day is None
    if "abatementAge" in resource:
        day = age_date(resource["abatementAge"], birth, f"{where}.abatementAge", problems)
        return day, day is None
    period = resource.get("abatementPeriod")
    if isinstance(period, dict):
        start = period.get("start") if "start" in period else period.get("end")
        day = date(start, f"{where}.abatementPeriod", problems)
        return day, day is None
    abatement_range = resource.get("abatementRange")
    if isinstance(abatement_range, dict):
        day = age_date(abatement_range.get("low"), birth, f"{where}.abatementRange.low",
                       problems)
        return day, day is None
    if resource.get("abatementBoolean") is True or "abatementString" in resource:
        return None, True
    return None, False


def effective(resource: Mapping[str, Any], where: str, problems: Problems) -> Onset:
    """When an Observation was taken: effective[x], else issued."""
    for key, source in (("effectiveDateTime", "effectiveDateTime"),
                        ("effectiveInstant", "effectiveInstant")):
        if key in resource:
            day = date(resource[key], f"{where}.{key}", problems)
            if day is not None:
                return Onset(day, source)
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and "start" in period:
        day = date(period["start"], f"{where}.effectivePeriod.start", problems)
        if day is not None:
            return Onset(day, "effectivePeriod.start")
    if "issued" in resource:
        day = date(resource["issued"], f"{where}.issued", problems)
        if day is not None:
            return Onset(day, "issued")
    return Onset(None, "none")


def _age_bound(value: Any) -> AgeBound | None:
    if not isinstance(value, dict):
        return None
    amount = number(value.get("value"))
    if amount is None:
        return None
    return AgeBound(amount, normalise_age_unit(value.get("unit"), value.get("code")))


def reference_ranges(value: Any, where: str, problems: Problems) -> tuple[ReferenceRange, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(where, f"is {_shown(value)}, not a list")
        return ()
    ranges = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            problems.add(at, f"is {_shown(item)}, not a reference range")
            continue
        age = item.get("age")
        ranges.append(ReferenceRange(
            low=quantity(item.get("low"), f"{at}.low", problems),
            high=quantity(item.get("high"), f"{at}.high", problems),
            type=concept(item.get("type"), f"{at}.type", problems),
            age_low=_age_bound(age.get("low")) if isinstance(age, dict) else None,
            age_high=_age_bound(age.get("high")) if isinstance(age, dict) else None,
            has_age=isinstance(age, dict),
        ))
    return tuple(ranges)


def observation_part(value: Mapping[str, Any], code: Concept, where: str,
                     problems: Problems) -> ObservationPart:
    """One Observation or component whose code the rules read, with its value."""
    return ObservationPart(
        code=code,
        value_quantity=quantity(value.get("valueQuantity"), f"{where}.valueQuantity", problems),
        value_concept=concept(value.get("valueCodeableConcept"),
                              f"{where}.valueCodeableConcept", problems),
        value_string=string(value.get("valueString"), f"{where}.valueString", problems),
        data_absent=concept(value.get("dataAbsentReason"), f"{where}.dataAbsentReason",
                            problems),
        interpretation=concepts(value.get("interpretation"), f"{where}.interpretation",
                                problems),
        reference_range=reference_ranges(value.get("referenceRange"),
                                         f"{where}.referenceRange", problems),
        location=where,
    )
