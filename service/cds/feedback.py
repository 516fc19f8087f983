"""CDS Hooks feedback, and the cards it answers, kept in the shared state store.

Each card shown is recorded (its uuid, tier, row, recommendation kind and rules
version, never anything of the patient) so that the feedback report can say how many
cards were shown and answered, by tier and row. That record is best effort: when the
store is down the card is still shown, and the report counts it as not shown.

One row per (card uuid, outcome): a client that sends the same feedback twice (the
spec allows it) changes nothing, and the first report is kept. A call's items are
written in one transaction, committed before the answer, so an acknowledged item is
never lost. Rows received more than ``IPEX_FEEDBACK_RETENTION_DAYS`` ago are deleted
at start and, at most once an hour per process, when feedback arrives.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..runtime import utc_now
from ..state import CardRow, FeedbackRow, StateStore, StateUnavailable

log = logging.getLogger("ipex_screen.cds")

PRUNE_EVERY = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Stored:
    new: int
    duplicates: int
    new_outcomes: tuple[str, ...] = ()


class FeedbackLog:
    """Card feedback in the state store, pruned after the retention period."""

    def __init__(self, store: StateStore, *, retention_days: int,
                 now: Callable[[], dt.datetime] = utc_now) -> None:
        self.store = store
        self.retention = dt.timedelta(days=retention_days)
        self._now = now
        self._pruned_at: dt.datetime | None = None
        self._lock = threading.Lock()

    def add(self, items: Iterable[Mapping[str, Any]]) -> Stored:
        """Store validated feedback items; raises StateUnavailable when it cannot."""
        received = self._now()
        rows = [feedback_row(item, received_at=received) for item in items]
        outcomes = self.store.add_feedback(rows)
        self.prune_if_due()
        return Stored(new=len(outcomes), duplicates=len(rows) - len(outcomes),
                      new_outcomes=tuple(outcomes))

    def shown(self, cards: Iterable[CardRow]) -> bool:
        """Record cards shown; False (logged, never raised) when the store cannot."""
        rows = list(cards)
        if not rows:
            return True
        try:
            self.store.add_cards(rows)
        except StateUnavailable:
            log.warning("CDS call: %d card(s) shown but not recorded for the feedback report "
                        "(the state store is unavailable)", len(rows))
            return False
        return True

    def prune_if_due(self) -> None:
        """Delete rows past the retention period, at most once per ``PRUNE_EVERY``."""
        now = self._now()
        with self._lock:
            if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = now
        try:
            gone = self.store.prune_feedback(received_before=now - self.retention)
        except StateUnavailable:
            return  # the store logged why; the next call tries again in an hour
        if gone:
            log.info("CDS feedback: %d rows older than %d days deleted", gone,
                     self.retention.days)

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, oldest first (for operators and tests)."""
        return self.store.feedback_rows()


def feedback_row(item: Mapping[str, Any], *, received_at: dt.datetime) -> FeedbackRow:
    """A validated feedback item (see :mod:`.schemas`) as the store keeps it."""
    timestamp: dt.datetime = item["outcomeTimestamp"]
    accepted = item.get("acceptedSuggestions")
    override = item.get("overrideReason") or {}
    reason = override.get("reason") or {}
    return FeedbackRow(
        card=item["card"],
        outcome=item["outcome"],
        outcome_timestamp=timestamp.astimezone(dt.UTC),
        accepted_suggestions=tuple(s["id"] for s in accepted) if accepted else None,
        override_system=reason.get("system"),
        override_code=reason.get("code"),
        override_display=reason.get("display"),
        user_comment=override.get("userComment"),
        received_at=received_at.astimezone(dt.UTC),
    )
