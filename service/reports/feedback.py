"""How clinicians answered the cards: counts by week, outcome, override reason, tier and row.

Read from the state store through its interface (:mod:`service.state`): the cards shown
(tier, row, recommendation kind, rules version) and the CDS Hooks feedback on them.
Only counts come out. Never read: the free-text ``userComment`` (a clinician may write
anything there, a patient's name included) and anything that could point back to a
patient; card ids are used to join feedback to its card and never shown.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NO_REASON = "no reason given"
UNKNOWN_ROW = "card not recorded"


@dataclass(frozen=True, slots=True, order=True)
class Week:
    start: dt.date  # the Monday

    @property
    def label(self) -> str:
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"


@dataclass(slots=True)
class WeekCounts:
    week: Week
    shown: int = 0
    answered: int = 0  # cards whose first answer came that week
    accepted: int = 0
    overridden: int = 0


@dataclass(slots=True)
class RowCounts:
    label: str  # "Row 1 (high, IPEX)"
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    answered: int = 0

    @property
    def unanswered(self) -> int:
        return max(self.shown - self.answered, 0)


@dataclass(slots=True)
class FeedbackSummary:
    weeks: list[WeekCounts]
    rows: list[RowCounts]
    override_reasons: list[tuple[str, int]]
    shown: int
    answered: int
    accepted: int
    overridden: int
    rules_versions: list[str] = field(default_factory=list)

    @property
    def first_week(self) -> Week | None:
        return self.weeks[0].week if self.weeks else None

    @property
    def last_week(self) -> Week | None:
        return self.weeks[-1].week if self.weeks else None


def _moment(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _week(moment: dt.datetime) -> Week:
    day = moment.astimezone(dt.UTC).date()
    return Week(day - dt.timedelta(days=day.weekday()))


def _row_label(card: Mapping[str, Any]) -> str:
    kind = f", {card['recommendation']}" if card.get("recommendation") else ""
    return f"Row {card['tier_row']} ({card['tier']}{kind})"


def summarize(cards: Sequence[Mapping[str, Any]], feedback: Sequence[Mapping[str, Any]],
              *, since: dt.date | None = None) -> FeedbackSummary:
    """Count the cards shown and their feedback (each as the store lists them)."""
    cutoff = dt.datetime.combine(since, dt.time(), dt.UTC) if since else None
    shown = [c for c in cards if cutoff is None or _moment(c["issued_at"]) >= cutoff]
    answers = [f for f in feedback
               if cutoff is None or _moment(f["outcome_timestamp"]) >= cutoff]
    by_card = {c["card"]: c for c in cards}
    weeks: dict[Week, WeekCounts] = {}

    def week_of(moment: dt.datetime) -> WeekCounts:
        week = _week(moment)
        return weeks.setdefault(week, WeekCounts(week))

    rows: dict[str, RowCounts] = {}
    for card in shown:
        week_of(_moment(card["issued_at"])).shown += 1
        label = _row_label(card)
        rows.setdefault(label, RowCounts(label)).shown += 1
    first_answer: dict[str, dt.datetime] = {}
    reasons: Counter[str] = Counter()
    for item in answers:
        moment = _moment(item["outcome_timestamp"])
        counts = week_of(moment)
        answered = by_card.get(item["card"])
        label = _row_label(answered) if answered is not None else UNKNOWN_ROW
        row = rows.setdefault(label, RowCounts(label))
        if item["outcome"] == "accepted":
            counts.accepted += 1
            row.accepted += 1
        else:
            counts.overridden += 1
            row.overridden += 1
            reasons[item.get("override_display") or item.get("override_code") or NO_REASON] += 1
        previous = first_answer.get(item["card"])
        if previous is None or moment < previous:
            first_answer[item["card"]] = moment
    for card_id, moment in first_answer.items():
        week_of(moment).answered += 1
        known = by_card.get(card_id)
        rows[_row_label(known) if known is not None else UNKNOWN_ROW].answered += 1
    if weeks:  # every week from the first to the last, the empty ones too
        week, last = min(weeks), max(weeks)
        while week.start < last.start:
            week = Week(week.start + dt.timedelta(days=7))
            weeks.setdefault(week, WeekCounts(week))
    ordered_rows = sorted(rows.values(), key=lambda r: (r.label == UNKNOWN_ROW, _row_key(r)))
    return FeedbackSummary(
        weeks=[weeks[w] for w in sorted(weeks, key=lambda w: w.start)],
        rows=ordered_rows,
        override_reasons=reasons.most_common(),
        shown=len(shown),
        answered=len(first_answer),
        accepted=sum(1 for f in answers if f["outcome"] == "accepted"),
        overridden=sum(1 for f in answers if f["outcome"] != "accepted"),
        rules_versions=sorted({str(c["rules_version"]) for c in shown}),
    )


def _row_key(row: RowCounts) -> int:
    number = row.label.removeprefix("Row ").split(" ", 1)[0]
    return int(number) if number.isdigit() else 10**6
