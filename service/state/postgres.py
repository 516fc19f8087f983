"""The shared back end: one PostgreSQL database for every replica (``IPEX_STATE_URL``).

psycopg 3 with its connection pool, one pool per process (made after gunicorn forks).
Every wait is bounded by ``IPEX_STATE_TIMEOUT_S`` (T):

- connecting: libpq's ``connect_timeout`` (T, at least 2 s, libpq's floor);
- a free pooled connection: the pool's timeout (T);
- a statement or a lock: the server's ``statement_timeout`` and ``lock_timeout`` (T);
- a server that stops answering altogether (the server-side timeouts cannot fire):
  a watchdog shuts the connection's socket down at T + 1 s, which ends the read.

A connection that went stale while pooled (the server restarted) is found by a
``SELECT 1`` before the work and replaced, so a restart costs callers nothing.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import ConfigError
from .migrations import HISTORY_POSTGRES, LATEST, pending
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

POOL_SIZE = 4  # per process: a sync worker uses one; headroom for threads and probes
WATCHDOG_MARGIN_S = 1.0
MIGRATION_TIMEOUT_S = 30.0  # another replica may hold the migration lock meanwhile
RECONNECT_GIVE_UP_S = 5.0  # then the next caller starts a fresh attempt (no long back-off)
# Any 64-bit number the service alone uses: the migration lock of every replica.
MIGRATION_LOCK_KEY = 0x1BE7_5C4E_E2_57A7E
_SAFE_QUERY_KEYS = frozenset({"host", "hostaddr", "port", "dbname", "user", "sslmode",
                              "target_session_attrs", "application_name"})


def safe_url(url: str) -> str:
    """The URL without its password or any parameter that could hold a secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return f"{url.split(':', 1)[0]}://(a URL that cannot be parsed)"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in _SAFE_QUERY_KEYS])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _Watchdog:
    """Shut a connection's socket down if the work outlives its deadline (a hung server)."""

    def __init__(self, connection: psycopg.Connection[Any], seconds: float) -> None:
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._fd = connection.pgconn.socket
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                # A duplicate of the descriptor: shutting it down ends the blocked read on
                # the original, and closing the duplicate never frees the original number.
                with socket.socket(fileno=os.dup(self._fd)) as duplicate:
                    duplicate.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


class PostgresStore(StateStore):
    """The state in a PostgreSQL database shared by every replica."""

    kind = "postgresql"

    def __init__(self, url: str, *, timeout_s: float, pool_size: int = POOL_SIZE,
                 cool_down_s: float = COOL_DOWN_S) -> None:
        super().__init__(cool_down_s=cool_down_s)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            raise ConfigError("IPEX_STATE_URL is not a PostgreSQL URL libpq can read "
                              "(postgresql://user@host:port/database)") from None
        self.where = safe_url(url)
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self._password = str(params.get("password") or "")
        self._conninfo = make_conninfo(url, connect_timeout=max(2, round(timeout_s)),
                                       application_name="ipex-screen")
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_pid = 0
        self._closes_at_exit = 0
        self._pool_lock = threading.Lock()
        self._last_connect_error: tuple[float, str] | None = None

    # --- the pool -------------------------------------------------------------------

    def _connections(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                # A pool inherited across a fork is not ours to close: its threads stayed
                # in the parent. start() closes the parent's pool before gunicorn forks.
                self._pool = psycopg_pool.ConnectionPool(
                    self._conninfo,
                    connection_class=_recording_connection_class(self),
                    kwargs={"autocommit": True, "prepare_threshold": None},
                    min_size=1,
                    max_size=self.pool_size,
                    open=False,
                    timeout=self.timeout_s,
                    reconnect_timeout=RECONNECT_GIVE_UP_S,
                    configure=self._configure,
                    name=f"ipex-state-{os.getpid()}",
                    num_workers=2,
                )
                self._pool.open(wait=False)
                self._pool_pid = os.getpid()
                if self._closes_at_exit != os.getpid():
                    # A worker that exits says goodbye to the server instead of vanishing.
                    atexit.register(self.close)
                    self._closes_at_exit = os.getpid()
            return self._pool

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        wait_ms = str(int(self.timeout_s * 1000))
        connection.execute(
            "SELECT set_config('statement_timeout', %s, false),"
            " set_config('lock_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false)",
            (wait_ms, wait_ms, str(int(self.timeout_s * 10_000))),
        )

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
            if pool is not None and self._pool_pid == os.getpid():
                pool.close(timeout=self.timeout_s)

    def start(self) -> bool:
        """Migrate, then close the pool: no connection or pool thread crosses a fork."""
        try:
            return super().start()
        finally:
            self.close()

    def _run(self, work: Callable[[psycopg.Connection[Any]], T], *,
             seconds: float | None = None) -> T:
        """Run ``work`` in one transaction on a pooled connection, within the deadlines."""
        budget = seconds if seconds is not None else self.timeout_s + WATCHDOG_MARGIN_S
        pool = self._connections()
        attempts = self.pool_size + 1  # each pooled connection may have gone stale at once
        for attempt in range(1, attempts + 1):
            with pool.connection(timeout=self.timeout_s) as connection:
                watchdog = _Watchdog(connection, budget)
                try:
                    try:
                        connection.execute("SELECT 1")
                    except psycopg.OperationalError:
                        if attempt < attempts and not watchdog.fired:
                            continue  # stale: the pool drops it, the next one is tried
                        raise
                    with connection.transaction():
                        return work(connection)
                except psycopg.Error:
                    if watchdog.fired:
                        raise StateUnavailable(self.where, f"no answer within {budget:g} s; "
                                               "the connection was cut") from None
                    raise
                finally:
                    watchdog.stop()
                    if watchdog.fired:
                        connection.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, error: BaseException) -> StateUnavailable | None:
        if isinstance(error, psycopg_pool.PoolTimeout):
            cause = f"no connection within {self.timeout_s:g} s"
            last = self._last_connect_error
            if last is not None and time.monotonic() - last[0] < max(10.0, 3 * self.timeout_s):
                cause += f"; the last attempt failed: {' '.join(last[1].split())}"
            return StateUnavailable(self.where, self._scrub(cause))
        if isinstance(error, psycopg.Error):
            text = " ".join(str(error).split()) or "the connection was cut"
            if isinstance(error, psycopg.errors.QueryCanceled):
                text = f"a statement took longer than {self.timeout_s:g} s ({text})"
            return StateUnavailable(self.where, self._scrub(f"{text} ({type(error).__name__})"))
        return None

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    # --- migrations -----------------------------------------------------------------

    def _migrate(self) -> int:
        def migrate(connection: psycopg.Connection[Any]) -> int:
            wait_ms = str(int(MIGRATION_TIMEOUT_S * 1000))
            connection.execute("SELECT set_config('statement_timeout', %s, true),"
                               " set_config('lock_timeout', %s, true)", (wait_ms, wait_ms))
            # Held to the end of this transaction: replicas starting at once take turns.
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            connection.execute(HISTORY_POSTGRES)
            row = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
            current = int(row[0]) if row else 0
            for migration in pending(current):
                for statement in migration.postgres:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at)"
                    " VALUES (%s, %s, now())", (migration.version, migration.name))
            return max(current, LATEST)

        return self._run(migrate, seconds=MIGRATION_TIMEOUT_S + WATCHDOG_MARGIN_S)

    def _schema_version(self) -> int:
        def version(connection: psycopg.Connection[Any]) -> int:
            row = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
            return int(row[0]) if row else 0

        return self._run(version)

    # --- seen JWT ids ---------------------------------------------------------------

    def _mark_jti(self, iss: str, jti: str, keep_until: int, now: int) -> bool:
        def mark(connection: psycopg.Connection[Any]) -> bool:
            cursor = connection.execute(
                "INSERT INTO jwt_replay (iss, jti, exp) VALUES (%s, %s, %s)"
                " ON CONFLICT (iss, jti) DO UPDATE SET exp = EXCLUDED.exp"
                " WHERE jwt_replay.exp < %s",
                (iss, jti, keep_until, now),
            )
            return cursor.rowcount == 1

        return self._run(mark)

    def _prune_jtis(self, now: int) -> int:
        return self._run(lambda c: c.execute(
            "DELETE FROM jwt_replay WHERE exp < %s", (now,)).rowcount)

    def _count_jtis(self) -> int:
        def count(connection: psycopg.Connection[Any]) -> int:
            row = connection.execute("SELECT COUNT(*) FROM jwt_replay").fetchone()
            return int(row[0]) if row else 0

        return self._run(count)

    # --- feedback -------------------------------------------------------------------

    def _add_feedback(self, rows: Sequence[FeedbackRow]) -> list[str]:
        statement = (f"INSERT INTO cds_feedback ({', '.join(FEEDBACK_COLUMNS)})"
                     f" VALUES ({', '.join(['%s'] * len(FEEDBACK_COLUMNS))})"
                     " ON CONFLICT (card, outcome) DO NOTHING")

        def insert(connection: psycopg.Connection[Any]) -> list[str]:
            new: list[str] = []
            for row in rows:
                if connection.execute(statement, _feedback_values(row)).rowcount:
                    new.append(row.outcome)
            return new

        return self._run(insert)

    def _feedback_rows(self) -> list[dict[str, Any]]:
        def select(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            found = connection.execute(
                f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM cds_feedback ORDER BY seq"
            ).fetchall()
            return [_as_stored(dict(zip(FEEDBACK_COLUMNS, row, strict=True))) for row in found]

        return self._run(select)

    def _prune_feedback(self, received_before: dt.datetime) -> int:
        return self._run(lambda c: c.execute(
            "DELETE FROM cds_feedback WHERE received_at < %s", (received_before,)).rowcount)

    # --- cards shown ----------------------------------------------------------------

    def _add_cards(self, rows: Sequence[CardRow]) -> None:
        statement = (f"INSERT INTO cds_card ({', '.join(CARD_COLUMNS)})"
                     " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (card) DO NOTHING")

        def insert(connection: psycopg.Connection[Any]) -> None:
            for r in rows:
                connection.execute(statement, (r.card, r.issued_at.replace(microsecond=0),
                                               r.tier, r.row, r.recommendation,
                                               r.rules_version))

        self._run(insert)

    def _card_rows(self) -> list[dict[str, Any]]:
        def select(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            found = connection.execute(
                f"SELECT {', '.join(CARD_COLUMNS)} FROM cds_card ORDER BY seq").fetchall()
            rows = [dict(zip(CARD_COLUMNS, row, strict=True)) for row in found]
            for row in rows:
                row["issued_at"] = row["issued_at"].astimezone(dt.UTC).isoformat(
                    timespec="seconds")
            return rows

        return self._run(select)

    def _prune_cards(self, issued_before: dt.datetime) -> int:
        return self._run(lambda c: c.execute(
            "DELETE FROM cds_card WHERE issued_at < %s", (issued_before,)).rowcount)

    # --- readiness ------------------------------------------------------------------

    def _probe(self) -> None:
        self._run(lambda c: c.execute(
            "UPDATE state_heartbeat SET beats = beats + 1 WHERE id = 1"))


def _recording_connection_class(store: PostgresStore) -> type[psycopg.Connection[Any]]:
    """A connection class that keeps the last connection error, to say why in the log."""

    class Recording(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Recording:
            try:
                connection = super().connect(conninfo, **kwargs)
            except psycopg.Error as error:
                store._last_connect_error = (time.monotonic(), str(error).strip())
                raise
            store._last_connect_error = None
            return connection

    return Recording


def _feedback_values(row: FeedbackRow) -> tuple[Any, ...]:
    return (
        row.card,
        row.outcome,
        row.outcome_timestamp,
        json.dumps(list(row.accepted_suggestions)) if row.accepted_suggestions else None,
        row.override_system,
        row.override_code,
        row.override_display,
        row.user_comment,
        row.received_at.replace(microsecond=0),
    )


def _as_stored(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the SQLite back end gives it: timestamps as ISO 8601 UTC strings."""
    row["outcome_timestamp"] = row["outcome_timestamp"].astimezone(dt.UTC).isoformat()
    row["received_at"] = row["received_at"].astimezone(dt.UTC).isoformat(timespec="seconds")
    return row
