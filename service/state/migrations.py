"""Versioned schema migrations, one list for both back ends (same numbers, same meaning).

Each back end runs the pending ones at start, in one transaction, under a lock every
replica respects (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), and records
each in ``schema_migrations``. Migrations only add: a replica of the previous release
keeps working on a database a newer one has migrated (a rolling upgrade).

Version 1 is the schema release 0.1 created without a version table: its statements
are ``IF NOT EXISTS``, so a store made by that release is adopted as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

HISTORY_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)
HISTORY_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "CDS feedback and seen JWT ids",
        sqlite=(
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
            " PRIMARY KEY (card, outcome))",
            "CREATE TABLE IF NOT EXISTS jwt_replay ("
            " iss TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL,"
            " PRIMARY KEY (iss, jti))",
            "CREATE INDEX IF NOT EXISTS jwt_replay_exp ON jwt_replay (exp)",
        ),
        postgres=(
            "CREATE TABLE IF NOT EXISTS cds_feedback ("
            " seq bigint GENERATED ALWAYS AS IDENTITY,"
            " card text NOT NULL,"
            " outcome text NOT NULL,"
            " outcome_timestamp timestamptz NOT NULL,"
            " accepted_suggestions text,"
            " override_system text,"
            " override_code text,"
            " override_display text,"
            " user_comment text,"
            " received_at timestamptz NOT NULL,"
            " PRIMARY KEY (card, outcome))",
            "CREATE TABLE IF NOT EXISTS jwt_replay ("
            " iss text NOT NULL, jti text NOT NULL, exp bigint NOT NULL,"
            " PRIMARY KEY (iss, jti))",
            "CREATE INDEX IF NOT EXISTS jwt_replay_exp ON jwt_replay (exp)",
        ),
    ),
    Migration(
        2,
        "feedback retention index and the readiness heartbeat",
        sqlite=(
            "CREATE INDEX IF NOT EXISTS cds_feedback_received ON cds_feedback (received_at)",
            "CREATE TABLE IF NOT EXISTS state_heartbeat ("
            " id INTEGER PRIMARY KEY CHECK (id = 1), beats INTEGER NOT NULL)",
            "INSERT OR IGNORE INTO state_heartbeat (id, beats) VALUES (1, 0)",
        ),
        postgres=(
            "CREATE INDEX IF NOT EXISTS cds_feedback_received ON cds_feedback (received_at)",
            "CREATE TABLE IF NOT EXISTS state_heartbeat ("
            " id integer PRIMARY KEY CHECK (id = 1), beats bigint NOT NULL)",
            "INSERT INTO state_heartbeat (id, beats) VALUES (1, 0) ON CONFLICT DO NOTHING",
        ),
    ),
    Migration(
        3,
        "cards shown: tier, row and rules version of each card (no patient data)",
        sqlite=(
            "CREATE TABLE IF NOT EXISTS cds_card ("
            " card TEXT PRIMARY KEY,"
            " issued_at TEXT NOT NULL,"
            " tier TEXT NOT NULL,"
            " tier_row INTEGER NOT NULL,"
            " recommendation TEXT,"
            " rules_version TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS cds_card_issued ON cds_card (issued_at)",
        ),
        postgres=(
            "CREATE TABLE IF NOT EXISTS cds_card ("
            " seq bigint GENERATED ALWAYS AS IDENTITY,"
            " card text PRIMARY KEY,"
            " issued_at timestamptz NOT NULL,"
            " tier text NOT NULL,"
            " tier_row integer NOT NULL,"
            " recommendation text,"
            " rules_version text NOT NULL)",
            "CREATE INDEX IF NOT EXISTS cds_card_issued ON cds_card (issued_at)",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def pending(current: int) -> list[Migration]:
    """The migrations after ``current``, in order."""
    return [m for m in MIGRATIONS if m.version > current]
