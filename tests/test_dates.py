"""Dates and ages as the rules read them: partial dates, calendar months, ages in words."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.screening.dates import (
    AgeLimit,
    InvalidDate,
    add_months,
    date_after,
    describe_age,
    normalise_age_unit,
    parse_fhir_date,
)

D = dt.date


@pytest.mark.parametrize(("text", "day"), [
    ("2025", D(2025, 1, 1)),
    ("2025-03", D(2025, 3, 1)),
    ("2025-03-17", D(2025, 3, 17)),
    ("2024-02-29", D(2024, 2, 29)),
    ("2025-03-17T23:30:00-05:00", D(2025, 3, 17)),
    ("2025-03-17T00:00:00Z", D(2025, 3, 17)),
])
def test_a_fhir_date_means_its_earliest_day(text: str, day: dt.date) -> None:
    assert parse_fhir_date(text) == day


@pytest.mark.parametrize("text", ["2025-13-45", "2025-02-29", "2025-00", "0000", "March 2025",
                                  "", "25-03-17"])
def test_an_impossible_or_unreadable_date_is_refused(text: str) -> None:
    with pytest.raises(InvalidDate):
        parse_fhir_date(text)


@pytest.mark.parametrize(("start", "months", "end"), [
    (D(2024, 1, 31), 1, D(2024, 2, 29)),   # leap February
    (D(2023, 1, 31), 1, D(2023, 2, 28)),
    (D(2024, 8, 31), 6, D(2025, 2, 28)),
    (D(2024, 3, 31), 1, D(2024, 4, 30)),
    (D(2024, 12, 15), 1, D(2025, 1, 15)),  # over the year end
    (D(2024, 1, 15), 24, D(2026, 1, 15)),
    (D(2024, 2, 29), 12, D(2025, 2, 28)),  # born on 29 February
    (D(2024, 5, 31), -3, D(2024, 2, 29)),
])
def test_add_months_keeps_the_day_or_clamps_to_the_month_end(
    start: dt.date, months: int, end: dt.date
) -> None:
    assert add_months(start, months) == end


def test_add_months_beyond_the_calendar_is_an_invalid_date() -> None:
    with pytest.raises(InvalidDate):
        add_months(D(9999, 6, 1), 12)


@pytest.mark.parametrize(("value", "unit", "end"), [
    (6, "mo", D(2024, 7, 15)),
    (18, "a", D(2042, 1, 15)),
    (20, "wk", D(2024, 6, 3)),
    (10, "d", D(2024, 1, 25)),
    (1.5, "mo", D(2024, 3, 1)),          # 1 month + half of 30.4375 days (15)
    (0, "mo", D(2024, 1, 15)),
])
def test_an_age_after_birth(value: float, unit: str, end: dt.date) -> None:
    assert date_after(D(2024, 1, 15), value, unit) == end


@pytest.mark.parametrize(("value", "unit"), [(100_000, "a"), (1e300, "d"), (5e5, "mo")])
def test_an_age_beyond_the_calendar_is_an_invalid_date(value: float, unit: str) -> None:
    with pytest.raises(InvalidDate):
        date_after(D(2024, 1, 15), value, unit)


def test_an_age_limit_beyond_the_calendar_is_never_reached() -> None:
    """A birthDate of 9999-12-31 (valid FHIR) must not fail the tier table."""
    assert AgeLimit(18, "a").date_reached(D(9999, 12, 31)) == dt.date.max
    assert AgeLimit(6, "mo").date_reached(D(2024, 1, 15)) == D(2024, 7, 15)


def test_an_unsupported_age_unit_is_refused() -> None:
    with pytest.raises(InvalidDate):
        date_after(D(2024, 1, 15), 3, "fortnight")


@pytest.mark.parametrize(("unit", "code", "normal"), [
    ("months", "mo", "mo"), ("years", None, "a"), ("yr", None, "a"), (None, "wk", "wk"),
    ("Days", None, "d"), ("month", "nonsense", "mo"), ("parsecs", None, None), (None, None, None),
])
def test_age_units_from_ucum_code_or_words(unit: str | None, code: str | None,
                                           normal: str | None) -> None:
    assert normalise_age_unit(unit, code) == normal


@pytest.mark.parametrize(("on", "words"), [
    (D(2024, 1, 15), "0 days"),
    (D(2024, 1, 16), "1 day"),
    (D(2024, 1, 28), "13 days"),
    (D(2024, 1, 29), "2 weeks"),
    (D(2024, 2, 14), "4 weeks"),
    (D(2024, 2, 15), "1 month"),
    (D(2024, 3, 14), "1 month"),
    (D(2024, 7, 15), "6 months"),
    (D(2026, 1, 14), "23 months"),
    (D(2026, 1, 15), "2 years"),
    (D(2026, 2, 15), "2 years 1 month"),
    (D(2027, 5, 20), "3 years 4 months"),
    (D(2023, 12, 31), "before birth"),
])
def test_describe_age_in_a_paediatricians_words(on: dt.date, words: str) -> None:
    assert describe_age(D(2024, 1, 15), on) == words


def test_describe_age_at_a_month_end() -> None:
    born = D(2024, 1, 31)
    assert describe_age(born, D(2024, 2, 28)) == "4 weeks"
    assert describe_age(born, D(2024, 2, 29)) == "1 month"  # the clamped month-end is reached


@given(born=st.dates(min_value=D(1900, 1, 1), max_value=D(2100, 1, 1)),
       days=st.integers(min_value=0, max_value=40 * 366))
def test_describe_age_agrees_with_the_age_limits(born: dt.date, days: int) -> None:
    """'n months' in the narrative exactly when the n-month limit is reached and n+1 is not."""
    on = born + dt.timedelta(days=days)
    words = describe_age(born, on)
    if "month" not in words and "year" not in words:
        assert on < AgeLimit(1, "mo").date_reached(born)
        return
    parts = words.split()
    months = int(parts[0]) * (12 if parts[1] == "years" else 1)
    if len(parts) == 4:
        months += int(parts[2])
    assert AgeLimit(months, "mo").date_reached(born) <= on < add_months(born, months + 1)
