"""Dates and ages as the screening rules read them.

FHIR dates may be partial (``2025``, ``2025-03``); the rules read a partial date as
its earliest day. Ages are calendar ages: "onset before 6 months" means the onset
fell before the day the child turned 6 months old.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")

# FHIR Age / Duration units (UCUM) the rules accept, as (months, days) per unit.
_AGE_UNITS: dict[str, tuple[int, float]] = {
    "a": (12, 0),
    "mo": (1, 0),
    "wk": (0, 7),
    "d": (0, 1),
    "h": (0, 1 / 24),
    "min": (0, 1 / 1440),
}
_UNIT_WORDS = {
    "year": "a", "years": "a", "yr": "a", "y": "a",
    "month": "mo", "months": "mo",
    "week": "wk", "weeks": "wk",
    "day": "d", "days": "d",
    "hour": "h", "hours": "h",
}


class InvalidDate(ValueError):
    """A date that is not a real calendar date."""


def parse_fhir_date(value: str) -> dt.date:
    """Return the earliest day a FHIR date or dateTime can mean."""
    match = _DATE_RE.match(value)
    if match is None:
        raise InvalidDate(f"not a FHIR date: {value!r}")
    year = int(match.group(1))
    month = int(match.group(2) or 1)
    day = int(match.group(3) or 1)
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise InvalidDate(f"not a calendar date: {value!r}") from exc


def add_months(day: dt.date, months: int) -> dt.date:
    """Add calendar months, clamping to the last day of a shorter month."""
    total = day.year * 12 + (day.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    if not dt.MINYEAR <= year <= dt.MAXYEAR:
        raise InvalidDate(f"{day.isoformat()} plus {months} months is beyond the calendar")
    last = calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day.day, last))


@dataclass(frozen=True, slots=True)
class AgeLimit:
    """An age such as 6 months or 18 years, as written in the rule table."""

    value: float
    unit: str

    def date_reached(self, birth_date: dt.date) -> dt.date:
        """Return the day a child born on ``birth_date`` reaches this age."""
        try:
            return date_after(birth_date, self.value, self.unit)
        except InvalidDate:
            # Born so close to 9999-12-31 that the age falls beyond the calendar: every
            # representable date is before it (a bad birthDate must not fail the request).
            return dt.date.max

    def describe(self) -> str:
        names = {"a": "years", "mo": "months", "wk": "weeks", "d": "days"}
        number = int(self.value) if float(self.value).is_integer() else self.value
        return f"{number} {names.get(self.unit, self.unit)}"


def normalise_age_unit(unit: str | None, code: str | None) -> str | None:
    """Return the UCUM age unit of a FHIR Age, from its code or its human unit."""
    for candidate in (code, unit):
        if not candidate:
            continue
        text = candidate.strip()
        if text in _AGE_UNITS:
            return text
        word = _UNIT_WORDS.get(text.lower())
        if word is not None:
            return word
    return None


@lru_cache(maxsize=65_536)  # every row's limit for every patient: the same few dates
def date_after(start: dt.date, value: float, unit: str) -> dt.date:
    """Return ``start`` plus an age quantity (calendar months and years)."""
    if unit not in _AGE_UNITS:
        raise InvalidDate(f"unsupported age unit: {unit!r}")
    months_per_unit, days_per_unit = _AGE_UNITS[unit]
    try:
        if months_per_unit:
            whole = int(value)
            result = add_months(start, whole * months_per_unit)
            fraction = value - whole
            if fraction:
                result += dt.timedelta(days=round(fraction * months_per_unit * 30.4375))
            return result
        return start + dt.timedelta(days=int(value * days_per_unit))
    except OverflowError:
        raise InvalidDate(f"{start} plus {value} {unit} is beyond the calendar") from None


def describe_age(birth_date: dt.date, on: dt.date) -> str:
    """Describe an age in the words a paediatrician uses (``3 weeks``, ``4 months``)."""
    if on < birth_date:
        return "before birth"
    days = (on - birth_date).days
    months = (on.year - birth_date.year) * 12 + (on.month - birth_date.month)
    if on.day < birth_date.day and add_months(birth_date, months) > on:
        months -= 1
    if months < 1:
        if days < 14:
            return f"{days} day" + ("" if days == 1 else "s")
        weeks = days // 7
        return f"{weeks} weeks"
    if months < 24:
        return f"{months} month" + ("" if months == 1 else "s")
    years, rest = divmod(months, 12)
    return f"{years} years" + (f" {rest} month" + ("" if rest == 1 else "s") if rest else "")
