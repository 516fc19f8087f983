"""A clock a test sets and gives the runtime at construction (fixture: ``clock``)."""

from __future__ import annotations

import datetime as dt


class FixedClock:
    """Stands still at ``moment`` (default: when it was made) until a test moves it."""

    def __init__(self, moment: dt.datetime | None = None) -> None:
        self.moment = moment or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self.moment

    def today(self) -> dt.date:
        return self.moment.date()

    def set_today(self, day: dt.date) -> None:
        """Make it ``day`` (at noon UTC): e.g. a scenario's ``asOf``, the day the chart opens."""
        self.moment = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
