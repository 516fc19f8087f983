"""The embedded back end: one SQLite file in WAL mode, shared by the workers of one host.

A connection per operation (cheap, and nothing crosses a gunicorn fork); the busy
timeout bounds how long a write waits for another worker's lock. Every error names
the file and, when the file cannot be opened, whether its directory is writable.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .migrations import HISTORY_SQLITE, LATEST, pending
from .store import (
    CARD_COLUMNS,
    COOL_DOWN_S,
    FEEDBACK_COLUMNS,
    CardRow,
    FeedbackRow,
    StateStore,
    StateUnavailable,
)

T = TypeVar("T")


def _iso(moment: dt.datetime, *, timespec: str = "auto") -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec=timespec)


class SqliteStore(StateStore):
    """The state in one SQLite file (``IPEX_STATE_DB``)."""

    kind = "sqlite"

    def __init__(self, path: str | Path, *, timeout_s: float,
                 cool_down_s: float = COOL_DOWN_S) -> None:
        super().__init__(cool_down_s=cool_down_s)
        self.path = str(path)
        self.where = self.path
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Nothing is held between operations."""

    # --- connections ----------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction, committed before returning."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

    def _unavailable(self, error: BaseException) -> StateUnavailable | None:
        if isinstance(error, sqlite3.Error):
            name = getattr(error, "sqlite_errorname", None) or type(error).__name__
            cause = f"{error} ({name})"
            if "unable to open" in str(error):
                cause += self._directory_hint()
            elif "readonly" in str(error):
                cause += (f"; the file and its -wal and -shm files must be writable by "
                          f"{_user()}")
            return StateUnavailable(self.where, cause)
        if isinstance(error, OSError):
            target = f" {error.filename}" if error.filename else ""
            return StateUnavailable(self.where, f"{error.strerror or error}:{target}"
                                    f" ({type(error).__name__}){self._directory_hint()}")
        return None

    def _directory_hint(self) -> str:
        directory = Path(self.path).parent
        user = _user()
        if not directory.exists():
            return f"; the directory {directory} does not exist"
        if not directory.is_dir():
            return f"; {directory} is not a directory"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"; the directory {directory} is not writable by {user}"
        return ""

    # --- migrations -----------------------------------------------------------------

    def _migrate(self) -> int:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            self._use_wal(connection)
        return self._write(self._apply_pending)

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        # Switching a new file to WAL takes a lock the busy handler does not wait for:
        # another worker or replica may be doing it at the same moment.
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def _apply_pending(connection: sqlite3.Connection) -> int:
        connection.execute(HISTORY_SQLITE)
        (current,) = connection.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        for migration in pending(int(current)):
            for statement in migration.sqlite:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                (migration.version, migration.name))
        return max(int(current), LATEST)

    def _schema_version(self) -> int:
        with self._connection() as connection:
            (version,) = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(version)

    # --- seen JWT ids ---------------------------------------------------------------

    def _mark_jti(self, iss: str, jti: str, keep_until: int, now: int) -> bool:
        with self._connection() as connection:
            cursor = connection.execute(
                "INSERT INTO jwt_replay (iss, jti, exp) VALUES (?, ?, ?)"
                " ON CONFLICT (iss, jti) DO UPDATE SET exp = excluded.exp"
                " WHERE jwt_replay.exp < ?",
                (iss, jti, keep_until, now),
            )
            return cursor.rowcount == 1

    def _prune_jtis(self, now: int) -> int:
        with self._connection() as connection:
            return connection.execute("DELETE FROM jwt_replay WHERE exp < ?", (now,)).rowcount

    def _count_jtis(self) -> int:
        with self._connection() as connection:
            (count,) = connection.execute("SELECT COUNT(*) FROM jwt_replay").fetchone()
        return int(count)

    # --- feedback -------------------------------------------------------------------

    def _add_feedback(self, rows: Sequence[FeedbackRow]) -> list[str]:
        values = [_feedback_values(row) for row in rows]

        def insert(connection: sqlite3.Connection) -> list[str]:
            new: list[str] = []
            for row in values:
                cursor = connection.execute(
                    f"INSERT OR IGNORE INTO cds_feedback ({', '.join(FEEDBACK_COLUMNS)})"
                    " VALUES (?,?,?,?,?,?,?,?,?)", row)
                if cursor.rowcount:
                    new.append(row[1])
            return new

        return self._write(insert)

    def _feedback_rows(self) -> list[dict[str, Any]]:
        with self._connection() as connection:
            connection.row_factory = sqlite3.Row
            found = connection.execute(
                f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM cds_feedback ORDER BY rowid"
            ).fetchall()
        return [dict(row) for row in found]

    def _prune_feedback(self, received_before: dt.datetime) -> int:
        cut_off = _iso(received_before, timespec="seconds")
        with self._connection() as connection:
            return connection.execute(
                "DELETE FROM cds_feedback WHERE received_at < ?", (cut_off,)).rowcount

    # --- cards shown ----------------------------------------------------------------

    def _add_cards(self, rows: Sequence[CardRow]) -> None:
        values = [(r.card, _iso(r.issued_at, timespec="seconds"), r.tier, r.row,
                   r.recommendation, r.rules_version) for r in rows]
        self._write(lambda connection: connection.executemany(
            f"INSERT OR IGNORE INTO cds_card ({', '.join(CARD_COLUMNS)}) VALUES (?,?,?,?,?,?)",
            values))

    def _card_rows(self) -> list[dict[str, Any]]:
        with self._connection() as connection:
            connection.row_factory = sqlite3.Row
            found = connection.execute(
                f"SELECT {', '.join(CARD_COLUMNS)} FROM cds_card ORDER BY rowid").fetchall()
        return [dict(row) for row in found]

    def _prune_cards(self, issued_before: dt.datetime) -> int:
        cut_off = _iso(issued_before, timespec="seconds")
        with self._connection() as connection:
            return connection.execute(
                "DELETE FROM cds_card WHERE issued_at < ?", (cut_off,)).rowcount

    # --- readiness ------------------------------------------------------------------

    def _probe(self) -> None:
        with self._connection() as connection:
            connection.execute("UPDATE state_heartbeat SET beats = beats + 1 WHERE id = 1")


def _user() -> str:
    return f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"


def _feedback_values(row: FeedbackRow) -> tuple[Any, ...]:
    return (
        row.card,
        row.outcome,
        _iso(row.outcome_timestamp),
        json.dumps(list(row.accepted_suggestions)) if row.accepted_suggestions else None,
        row.override_system,
        row.override_code,
        row.override_display,
        row.user_comment,
        _iso(row.received_at, timespec="seconds"),
    )
