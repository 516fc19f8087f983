"""CDS Hooks feedback, kept in the SQLite state store (``IPEX_STATE_DB``).

One row per (card uuid, outcome): a client that sends the same feedback twice (the
spec allows it) changes nothing, and the first report is kept. WAL mode and a busy
timeout let every gunicorn worker write to the same file; each write is committed
before the answer, so nothing is lost across restarts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime import utc_now

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cds_feedback ("
    " card TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " outcome_timestamp TEXT NOT NULL,"
    " accepted_suggestions TEXT,"
    " override_system TEXT,"
    " override_code TEXT,"
    " override_display TEXT,"
    " user_comment TEXT,"
    " received_at TEXT NOT NULL,"
    " PRIMARY KEY (card, outcome))"
)


class FeedbackStoreError(Exception):
    """The store could not be written; the client should send the feedback again."""


@dataclass(frozen=True, slots=True)
class Stored:
    new: int
    duplicates: int
    new_outcomes: tuple[str, ...] = ()


class FeedbackStore:
    """Feedback rows in SQLite, shared by every worker using the same file."""

    def __init__(self, path: str | Path, *, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.path = str(path)
        self._now = now
        self._ready_pid = 0
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        ready = self._ready_pid == os.getpid()
        if not ready and self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        # Per process: a forked gunicorn worker sets the file up again on its first write.
        if not ready:
            for attempt in range(1, 6):
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute(_SCHEMA)
                    break
                except sqlite3.OperationalError:
                    # Another worker is switching a new file to WAL at the same moment.
                    if attempt == 5:
                        connection.close()
                        raise
                    time.sleep(0.05 * attempt)
            self._ready_pid = os.getpid()
        return connection

    def prepare(self) -> None:
        """Create the file and table now (at start, before workers fork)."""
        with self._lock:
            self._connect().close()

    def add(self, items: Iterable[Mapping[str, Any]]) -> Stored:
        """Store validated feedback items; (card, outcome) already stored are left as they are."""
        received = self._now().isoformat(timespec="seconds")
        rows = [_row(item, received) for item in items]
        try:
            with self._lock:
                connection = self._connect()
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    outcomes: list[str] = []
                    for row in rows:
                        cursor = connection.execute(
                            "INSERT OR IGNORE INTO cds_feedback VALUES (?,?,?,?,?,?,?,?,?)", row)
                        if cursor.rowcount:
                            outcomes.append(row[1])
                    connection.execute("COMMIT")
                finally:
                    connection.close()
        except (sqlite3.Error, OSError) as exc:
            raise FeedbackStoreError(type(exc).__name__) from None
        return Stored(new=len(outcomes), duplicates=len(rows) - len(outcomes),
                      new_outcomes=tuple(outcomes))

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, oldest first (for operators and tests)."""
        with self._lock:
            connection = self._connect()
            try:
                connection.row_factory = sqlite3.Row
                found = connection.execute(
                    "SELECT * FROM cds_feedback ORDER BY rowid").fetchall()
            finally:
                connection.close()
        return [dict(row) for row in found]


def _row(item: Mapping[str, Any], received: str) -> tuple[Any, ...]:
    timestamp: dt.datetime = item["outcomeTimestamp"]
    accepted = item.get("acceptedSuggestions")
    override = item.get("overrideReason") or {}
    reason = override.get("reason") or {}
    return (
        item["card"],
        item["outcome"],
        timestamp.astimezone(dt.UTC).isoformat(),
        json.dumps([s["id"] for s in accepted]) if accepted else None,
        reason.get("system"),
        reason.get("code"),
        reason.get("display"),
        override.get("userComment"),
        received,
    )
