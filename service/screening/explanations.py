"""Explained diarrhea (rules section 2): a coded cause, inside its window, explains it.

Dates the record does not give are spans, not guesses: an undated cause began at
some point between birth and the screening date; a diarrhea resolved without an
abatement date ended somewhere between its onset and the screening date. A window
holds only when it holds for every date the span allows, so a cause that cannot be
shown inside its window explains nothing and the diarrhea still counts (a screen
errs towards a second look, not towards silence).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from .ruleset import EvidenceSource, ExplainingCause, WindowBound


@dataclass(frozen=True, slots=True)
class Span:
    """The dates something may have happened on: ``earliest`` None means unbounded."""

    earliest: dt.date | None
    latest: dt.date

    @classmethod
    def exact(cls, day: dt.date) -> Span:
        return cls(day, day)


@dataclass(frozen=True, slots=True)
class CauseFact:
    """A Condition of the record that is an explaining cause, with when it began."""

    cause: ExplainingCause
    reference: str
    description: str
    code_label: str
    onset: dt.date | None
    onset_span: Span


@dataclass(frozen=True, slots=True)
class DiarrheaCourse:
    """When the diarrhea began and ended, as far as the record says."""

    start: Span
    end: Span

    def anchor(self, bound: WindowBound) -> Span:
        return self.start if bound.anchor == "diarrheaStart" else self.end


def _shifted(span: Span, bound: WindowBound) -> Span:
    earliest = bound.date_from(span.earliest) if span.earliest is not None else None
    return Span(earliest, bound.date_from(span.latest))


def within_window(cause: CauseFact, course: DiarrheaCourse) -> bool:
    """True when the cause's onset is shown inside its window (bounds inclusive)."""
    window = cause.cause
    if window.start is not None:
        lowest = _shifted(course.anchor(window.start), window.start)
        # Every possible onset must be on or after every possible lower edge.
        if cause.onset_span.earliest is None or cause.onset_span.earliest < lowest.latest:
            return False
    if window.end is not None:
        highest = _shifted(course.anchor(window.end), window.end)
        if highest.earliest is None or cause.onset_span.latest > highest.earliest:
            return False
    return True


def explaining_cause(
    source: EvidenceSource, course: DiarrheaCourse, causes: Iterable[CauseFact]
) -> CauseFact | None:
    """The earliest cause of the record that explains this code, if any."""
    allowed = {cause.id for cause in source.explained_by}
    if not allowed:
        return None
    candidates = sorted(
        (c for c in causes if c.cause.id in allowed),
        key=lambda c: (c.onset_span.latest, c.reference, c.cause.id),
    )
    return next((c for c in candidates if within_window(c, course)), None)
