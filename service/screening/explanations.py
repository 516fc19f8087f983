"""Explained diarrhea (rules section 2): a coded cause, inside its window, explains it.

Dates the record does not give are spans, not guesses: an undated cause began at
some point between birth and the screening date; a diarrhea resolved without an
abatement date ended somewhere between its onset and the screening date. A window
holds only when it holds for every date the span allows, so a cause that cannot be
shown inside its window explains nothing and the diarrhea still counts (a screen
errs towards a second look, not towards silence).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

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
    lowest, highest = _limits(cause.cause, course)
    if lowest is not None and (cause.onset_span.earliest is None
                               or cause.onset_span.earliest < lowest):
        return False
    return highest is None or cause.onset_span.latest <= highest


_NEVER = dt.date.min  # an upper limit nothing can meet


def _limits(
    cause: ExplainingCause, course: DiarrheaCourse
) -> tuple[dt.date | None, dt.date | None]:
    """(lowest, highest) onset every possible date of the course allows; None: no limit."""
    lowest = highest = None
    if cause.start is not None:
        # Every possible onset must be on or after every possible lower edge.
        lowest = _shifted(course.anchor(cause.start), cause.start).latest
    if cause.end is not None:
        edge = _shifted(course.anchor(cause.end), cause.end).earliest
        highest = edge if edge is not None else _NEVER
    return lowest, highest


def _key(fact: CauseFact) -> tuple[dt.date, str, str]:
    return (fact.onset_span.latest, fact.reference, fact.cause.id)


@dataclass(slots=True)
class CauseIndex:
    """A record's explaining causes by kind, dated ones sorted by onset: finding the
    earliest cause inside a window is a binary search, not a scan (linear time)."""

    dated: dict[str, tuple[list[dt.date], list[CauseFact]]] = field(default_factory=dict)
    undated: dict[str, CauseFact] = field(default_factory=dict)

    @classmethod
    def of(cls, causes: Iterable[CauseFact]) -> CauseIndex:
        index = cls()
        by_kind: dict[str, list[CauseFact]] = {}
        for fact in causes:
            if fact.onset is None:
                known = index.undated.get(fact.cause.id)
                if known is None or _key(fact) < _key(known):
                    index.undated[fact.cause.id] = fact
            else:
                by_kind.setdefault(fact.cause.id, []).append(fact)
        for kind, facts in by_kind.items():
            facts.sort(key=_key)
            index.dated[kind] = ([f.onset_span.latest for f in facts], facts)
        return index

    def earliest_within(self, cause: ExplainingCause, course: DiarrheaCourse
                        ) -> CauseFact | None:
        lowest, highest = _limits(cause, course)
        found: list[CauseFact] = []
        dates, facts = self.dated.get(cause.id, ([], []))
        at = bisect.bisect_left(dates, lowest) if lowest is not None else 0
        if at < len(dates) and (highest is None or dates[at] <= highest):
            found.append(facts[at])
        undated = self.undated.get(cause.id)
        if undated is not None and within_window(undated, course):
            found.append(undated)
        return min(found, key=_key) if found else None


def explaining_cause(
    source: EvidenceSource, course: DiarrheaCourse, causes: CauseIndex
) -> CauseFact | None:
    """The earliest cause of the record that explains this code, if any."""
    found = [hit for cause in source.explained_by
             if (hit := causes.earliest_within(cause, course)) is not None]
    return min(found, key=_key) if found else None
