"""The state store's interface: what replicas share, and how a failing store is reported.

Two back ends implement :class:`StateStore`: :mod:`.sqlite` (one file, the embedded
default) and :mod:`.postgres` (one database shared by every replica). Callers never
see a driver's exception: every failure to reach, read or write the store becomes
:class:`StateUnavailable`, whose text names the store (a path, or a URL without its
password) and the cause, so the log line says what to fix.

The store reads no clock: times come in from the caller (the runtime's clock).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("ipex_screen.state")

T = TypeVar("T")

# After a failure, calls fail at once for this long instead of each waiting out the
# timeouts again; then one call tries the store (and a success closes the gap). Longer
# than a failing call's wait, so that a worker mostly answers from the failure; the
# readiness probe ignores it, so recovery is seen at the next probe.
COOL_DOWN_S = 5.0


class StateUnavailable(Exception):
    """The store cannot be used now; ``where`` and ``cause`` are safe to log (no secrets)."""

    def __init__(self, where: str, cause: str) -> None:
        super().__init__(f"state store {where}: {cause}")
        self.where = where
        self.cause = cause


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One CDS Hooks feedback item as stored: (card, outcome) is its identity."""

    card: str
    outcome: str
    outcome_timestamp: dt.datetime  # aware, UTC
    accepted_suggestions: tuple[str, ...] | None
    override_system: str | None
    override_code: str | None
    override_display: str | None
    user_comment: str | None
    received_at: dt.datetime  # aware, UTC


@dataclass(frozen=True, slots=True)
class CardRow:
    """A card the service showed: which tier and row, by which rules. No patient data."""

    card: str
    issued_at: dt.datetime  # aware, UTC
    tier: str
    row: int
    recommendation: str | None  # the row's kind: IPEX, NDM, PANEL
    rules_version: str


CARD_COLUMNS = ("card", "issued_at", "tier", "tier_row", "recommendation", "rules_version")

FEEDBACK_COLUMNS = ("card", "outcome", "outcome_timestamp", "accepted_suggestions",
                    "override_system", "override_code", "override_display", "user_comment",
                    "received_at")


class Availability:
    """Remembers the last failure so that, for ``COOL_DOWN_S``, callers fail fast with it."""

    def __init__(self, *, cool_down_s: float = COOL_DOWN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cool_down_s = cool_down_s
        self._clock = clock
        self._failure: StateUnavailable | None = None
        self._failed_at = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise the recent failure while the cool-down lasts."""
        with self._lock:
            failure = self._failure
            if failure is not None and self._clock() - self._failed_at < self.cool_down_s:
                raise StateUnavailable(failure.where, failure.cause)

    def failed(self, error: StateUnavailable) -> None:
        with self._lock:
            if self._failure is None or self._failure.cause != error.cause:
                log.error("%s", error, extra={"fields": {"state_store": error.where,
                                                         "cause": error.cause}})
            self._failure = error
            self._failed_at = self._clock()

    def succeeded(self) -> None:
        with self._lock:
            if self._failure is not None:
                log.warning("state store %s usable again", self._failure.where)
            self._failure = None

    @property
    def last_failure(self) -> StateUnavailable | None:
        return self._failure


class StateStore(ABC):
    """What every replica shares: seen JWT ids and CDS feedback, behind versioned migrations."""

    kind: str  # "sqlite" or "postgresql"
    where: str  # the path, or the URL without its password: safe to log

    def __init__(self, *, cool_down_s: float = COOL_DOWN_S) -> None:
        self.availability = Availability(cool_down_s=cool_down_s)
        self._migrated = False
        self._migrate_lock = threading.Lock()

    # --- what callers use ---------------------------------------------------------

    def start(self) -> bool:
        """Migrate the schema at start; on failure log why and go on (readiness says 503)."""
        try:
            self._guarded(lambda: None)
        except StateUnavailable:
            return False
        return True

    def mark_jti(self, *, iss: str, jti: str, keep_until: int, now: int) -> bool:
        """Record ``jti``; False when a token still alive (its ``keep_until`` >= now) used it."""
        return self._guarded(lambda: self._mark_jti(iss, jti, keep_until, now))

    def prune_jtis(self, *, now: int) -> int:
        """Drop the ids of tokens that have expired; how many went."""
        return self._guarded(lambda: self._prune_jtis(now))

    def count_jtis(self) -> int:
        return self._guarded(self._count_jtis)

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> list[str]:
        """Store rows in one transaction, keeping the first of each (card, outcome).

        Returns the outcomes of the rows that were new. Committed before it returns.
        """
        return self._guarded(lambda: self._add_feedback(rows))

    def feedback_rows(self) -> list[dict[str, Any]]:
        """Every feedback row, oldest first, timestamps as ISO 8601 UTC strings."""
        return self._guarded(self._feedback_rows)

    def prune_feedback(self, *, received_before: dt.datetime) -> int:
        """Drop feedback (and records of cards shown) received or shown before the cut-off
        (the retention period); how many feedback rows went."""
        gone = self._guarded(lambda: self._prune_feedback(received_before))
        self._guarded(lambda: self._prune_cards(received_before))
        return gone

    def add_cards(self, rows: Sequence[CardRow]) -> None:
        """Record cards shown (a card id already recorded is left as it was)."""
        self._guarded(lambda: self._add_cards(rows))

    def card_rows(self) -> list[dict[str, Any]]:
        """Every card shown, oldest first, ``issued_at`` as an ISO 8601 UTC string."""
        return self._guarded(self._card_rows)

    def probe(self) -> None:
        """Prove the store can be written now (a one-row write), or raise StateUnavailable.

        Always tries the store, cool-down or not: readiness reports what is true now.
        """
        self._guarded(self._probe, fresh=True)

    def schema_version(self) -> int:
        return self._guarded(self._schema_version)

    @abstractmethod
    def close(self) -> None:
        """Release connections (before a fork, and at exit)."""

    # --- what back ends implement -------------------------------------------------

    @abstractmethod
    def _migrate(self) -> int:
        """Apply pending migrations under a lock that other replicas respect; the version."""

    @abstractmethod
    def _mark_jti(self, iss: str, jti: str, keep_until: int, now: int) -> bool: ...

    @abstractmethod
    def _prune_jtis(self, now: int) -> int: ...

    @abstractmethod
    def _count_jtis(self) -> int: ...

    @abstractmethod
    def _add_feedback(self, rows: Sequence[FeedbackRow]) -> list[str]: ...

    @abstractmethod
    def _feedback_rows(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _prune_feedback(self, received_before: dt.datetime) -> int: ...

    @abstractmethod
    def _add_cards(self, rows: Sequence[CardRow]) -> None: ...

    @abstractmethod
    def _card_rows(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _prune_cards(self, issued_before: dt.datetime) -> int: ...

    @abstractmethod
    def _probe(self) -> None: ...

    @abstractmethod
    def _schema_version(self) -> int: ...

    @abstractmethod
    def _unavailable(self, error: BaseException) -> StateUnavailable | None:
        """The driver's error as StateUnavailable, or None when it is not a store failure."""

    # --- the guard every operation goes through -------------------------------------

    def _guarded(self, operation: Callable[[], T], *, fresh: bool = False) -> T:
        if not fresh:
            self.availability.check()
        try:
            if not self._migrated:
                self._ensure_migrated()
            result = operation()
        except StateUnavailable as error:
            self.availability.failed(error)
            raise
        except Exception as error:
            unavailable = self._unavailable(error)
            if unavailable is None:
                raise
            self.availability.failed(unavailable)
            raise unavailable from None
        self.availability.succeeded()
        return result

    def _ensure_migrated(self) -> None:
        with self._migrate_lock:
            if not self._migrated:
                version = self._migrate()
                self._migrated = True
                log.info("state store %s ready (%s, schema version %d)",
                         self.where, self.kind, version)
