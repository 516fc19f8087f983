"""The state store on both back ends: migrations, the replay marks, feedback, failures.

Every test taking ``state_settings`` runs twice: on a SQLite file and on a fresh
database of the session's PostgreSQL server (bench/postgres_cluster.py).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.postgres_cluster import Cluster, free_port
from bench.tcp_proxy import proxy_to
from service.cds.feedback import FeedbackLog, feedback_row
from service.config import load_settings
from service.state import StateStore, StateUnavailable, open_store, state_problem
from service.state.migrations import LATEST, MIGRATIONS
from service.state.postgres import PostgresStore, safe_url
from service.state.sqlite import SqliteStore

UTC = dt.UTC
COOL_DOWN_S = 0.2  # the stores of these tests retry a failed store after this
NOON = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture()
def stores(state_settings: dict[str, Any]) -> Iterator[Callable[..., StateStore]]:
    """Make stores on the test's empty state store (each one a replica); all closed after."""
    made: list[StateStore] = []

    def make(**overrides: Any) -> StateStore:
        store = open_store(load_settings(**{**state_settings, **overrides}))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _item(card: str, outcome: str = "overridden", **extra: Any) -> dict[str, Any]:
    return {"card": card, "outcome": outcome,
            "outcomeTimestamp": dt.datetime(2026, 2, 1, 9, 30, tzinfo=UTC), **extra}


def _tables(store: StateStore) -> set[str]:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as connection:
            return {r[0] for r in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store._conninfo) as connection:
        return {r[0] for r in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _history(store: StateStore) -> list[int]:
    query = "SELECT version FROM schema_migrations ORDER BY version"
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as connection:
            return [r[0] for r in connection.execute(query)]
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store._conninfo) as connection:
        return [r[0] for r in connection.execute(query)]


# --- migrations -------------------------------------------------------------------------


def test_an_empty_store_is_migrated_to_the_latest_version_once(
        stores: Callable[..., StateStore]) -> None:
    store = stores()
    assert store.start()
    assert store.schema_version() == LATEST
    assert {"schema_migrations", "cds_feedback", "jwt_replay", "state_heartbeat"} <= _tables(
        store)
    assert stores().start() and stores().start()  # a restart, another replica
    assert _history(store) == [m.version for m in MIGRATIONS]


def test_a_store_at_version_1_with_data_is_migrated_and_keeps_it(
        stores: Callable[..., StateStore]) -> None:
    """Version 1 by itself, written by hand as a replica of the previous release left it."""
    store = stores()
    first = MIGRATIONS[0]
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as connection:
            for statement in first.sqlite:
                connection.execute(statement)
            connection.execute("INSERT INTO jwt_replay VALUES ('https://ehr', 'j-1', 4000000000)")
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store._conninfo) as connection:
            for statement in first.postgres:
                connection.execute(statement)
            connection.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                               " name text NOT NULL, applied_at timestamptz NOT NULL)")
            connection.execute("INSERT INTO schema_migrations VALUES (1, 'v1', now())")
            connection.execute("INSERT INTO jwt_replay VALUES ('https://ehr', 'j-1', 4000000000)")
    assert store.start() and store.schema_version() == LATEST
    assert not store.mark_jti(iss="https://ehr", jti="j-1", keep_until=4000000000, now=1)
    assert store.count_jtis() == 1
    store.probe()


def test_replicas_starting_at_once_migrate_once(stores: Callable[..., StateStore]) -> None:
    replicas = [stores() for _ in range(6)]
    barrier = threading.Barrier(len(replicas))
    started: list[bool] = []

    def start(store: StateStore) -> None:
        barrier.wait()
        started.append(store.start())

    threads = [threading.Thread(target=start, args=(s,)) for s in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert started == [True] * len(replicas)
    assert _history(replicas[0]) == [m.version for m in MIGRATIONS]


def test_a_sqlite_store_made_by_release_0_1_is_adopted(tmp_path: Path) -> None:
    """The exact schema and rows release 0.1 wrote, with no version table."""
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS cds_feedback ( card TEXT NOT NULL, outcome TEXT NOT NULL,"
            " outcome_timestamp TEXT NOT NULL, accepted_suggestions TEXT, override_system TEXT,"
            " override_code TEXT, override_display TEXT, user_comment TEXT,"
            " received_at TEXT NOT NULL, PRIMARY KEY (card, outcome))")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS jwt_replay ( iss TEXT NOT NULL, jti TEXT NOT NULL,"
            " exp INTEGER NOT NULL, PRIMARY KEY (iss, jti))")
        connection.execute("CREATE INDEX IF NOT EXISTS jwt_replay_exp ON jwt_replay (exp)")
        connection.execute(
            "INSERT INTO cds_feedback VALUES ('card-0.1', 'accepted',"
            " '2025-11-02T08:00:00+00:00', '[\"s-1\"]', NULL, NULL, NULL, NULL,"
            " '2025-11-02T08:00:05+00:00')")
    store = SqliteStore(path, timeout_s=2)
    assert store.start() and store.schema_version() == LATEST
    log = FeedbackLog(store, retention_days=3650)
    assert log.add([_item("card-0.1", "accepted", acceptedSuggestions=[{"id": "s-1"}])]
                   ).duplicates == 1
    assert [r["card"] for r in log.rows()] == ["card-0.1"]


# --- seen JWT ids -----------------------------------------------------------------------


def test_a_jti_is_fresh_once_while_its_token_lives(stores: Callable[..., StateStore]) -> None:
    store, other_replica = stores(), stores()
    assert store.mark_jti(iss="https://a", jti="j", keep_until=1100, now=1000)
    assert not other_replica.mark_jti(iss="https://a", jti="j", keep_until=1100, now=1050)
    assert other_replica.mark_jti(iss="https://b", jti="j", keep_until=1100, now=1050)
    assert store.mark_jti(iss="https://a", jti="j", keep_until=1300, now=1200)  # expired: new
    assert store.mark_jti(iss="https://a", jti="k", keep_until=1100, now=1000)
    assert store.prune_jtis(now=1150) == 2  # b/j and a/k expired; a/j lives to 1300
    assert store.count_jtis() == 1


def test_one_jti_sent_to_many_workers_at_once_is_admitted_once(
        stores: Callable[..., StateStore]) -> None:
    workers = [stores() for _ in range(8)]
    for worker in workers:
        worker.start()
    barrier = threading.Barrier(len(workers))
    admitted: list[bool] = []

    def mark(store: StateStore) -> None:
        barrier.wait()
        admitted.append(store.mark_jti(iss="https://a", jti="same", keep_until=2000, now=1000))

    threads = [threading.Thread(target=mark, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(admitted) == [False] * 7 + [True]


# --- feedback ---------------------------------------------------------------------------


def test_feedback_is_kept_once_per_card_and_outcome_in_one_shape(
        stores: Callable[..., StateStore]) -> None:
    log = FeedbackLog(stores(), retention_days=365, now=lambda: NOON)
    stored = log.add([
        _item("c-1", "accepted", acceptedSuggestions=[{"id": "s-1"}, {"id": "s-2"}],
              outcomeTimestamp=dt.datetime(2026, 2, 1, 10, 30, 15, 250000,
                                           tzinfo=dt.timezone(dt.timedelta(hours=1)))),
        _item("c-1", "overridden", overrideReason={
            "reason": {"system": "http://example.org/reasons", "code": "not-now",
                       "display": "Not now"}, "userComment": "family history known"}),
        _item("c-1", "accepted", acceptedSuggestions=[{"id": "s-9"}]),  # duplicate
    ])
    assert (stored.new, stored.duplicates, stored.new_outcomes) == (
        2, 1, ("accepted", "overridden"))
    assert log.add([_item("c-1", "overridden")]).duplicates == 1  # a later call, too
    assert log.rows() == [
        {"card": "c-1", "outcome": "accepted",
         "outcome_timestamp": "2026-02-01T09:30:15.250000+00:00",
         "accepted_suggestions": '["s-1", "s-2"]', "override_system": None,
         "override_code": None, "override_display": None, "user_comment": None,
         "received_at": "2026-03-01T12:00:00+00:00"},
        {"card": "c-1", "outcome": "overridden",
         "outcome_timestamp": "2026-02-01T09:30:00+00:00", "accepted_suggestions": None,
         "override_system": "http://example.org/reasons", "override_code": "not-now",
         "override_display": "Not now", "user_comment": "family history known",
         "received_at": "2026-03-01T12:00:00+00:00"},
    ]


def test_feedback_older_than_the_retention_period_is_pruned(
        stores: Callable[..., StateStore]) -> None:
    clock = [NOON - dt.timedelta(days=41)]
    log = FeedbackLog(stores(), retention_days=30, now=lambda: clock[0])
    log.add([_item("old")])
    clock[0] = NOON - dt.timedelta(days=10)
    log.add([_item("recent")])  # pruned 30 days back from day -10: "old" (day -41) goes
    assert [r["card"] for r in log.rows()] == ["recent"]
    clock[0] = NOON + dt.timedelta(days=25)
    log.prune_if_due()  # day +25: "recent" (day -10) is 35 days old
    assert log.rows() == []


def test_feedback_prune_runs_at_most_hourly(stores: Callable[..., StateStore]) -> None:
    store = stores()
    clock = [NOON]
    log = FeedbackLog(store, retention_days=1, now=lambda: clock[0])
    log.prune_if_due()
    store.add_feedback([feedback_row(_item("x"), received_at=NOON - dt.timedelta(days=3))])
    clock[0] = NOON + dt.timedelta(minutes=59)
    log.prune_if_due()
    assert len(log.rows()) == 1
    clock[0] = NOON + dt.timedelta(minutes=61)
    log.prune_if_due()
    assert log.rows() == []


# --- a store that cannot be used --------------------------------------------------------


def _fails(operation: Callable[[], object]) -> tuple[StateUnavailable, float]:
    started = time.monotonic()
    with pytest.raises(StateUnavailable) as caught:
        operation()
    return caught.value, time.monotonic() - started


def test_an_unreachable_postgresql_fails_fast_and_names_it_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://ipex:s3cr3t-pw@127.0.0.1:{port}/ipex?sslmode=disable&password=s3cr3t-pw"
    store = PostgresStore(url, timeout_s=0.5, cool_down_s=COOL_DOWN_S)
    try:
        assert not store.start()
        error, took = _fails(lambda: store.mark_jti(iss="a", jti="b", keep_until=2, now=1))
        assert took < 0.05, "within the cool-down a failure is answered at once"
        time.sleep(COOL_DOWN_S)
        error, took = _fails(lambda: store.mark_jti(iss="a", jti="b", keep_until=2, now=1))
        assert took < 1.0
        text = str(error)
        assert f"postgresql://ipex@127.0.0.1:{port}/ipex?sslmode=disable" in text
        assert "refused" in text
        assert "s3cr3t" not in text and "s3cr3t" not in repr(error)
        assert state_problem(store) is not None
    finally:
        store.close()


def test_safe_url_drops_passwords_and_secret_parameters() -> None:
    assert safe_url("postgresql://u:pw@db.example.org:5433/ipex?sslpassword=x&sslmode=require"
                    ) == "postgresql://u@db.example.org:5433/ipex?sslmode=require"
    assert safe_url("postgresql://[::1]/ipex") == "postgresql://[::1]/ipex"
    assert "pw" not in safe_url("postgresql://u:pw@db:notaport/ipex")


def test_a_sqlite_store_under_a_file_names_the_path_and_the_cause(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    store = SqliteStore(blocker / "state.sqlite3", timeout_s=2)
    assert not store.start()
    error, _ = _fails(store.probe)
    assert str(blocker / "state.sqlite3") in str(error)
    assert "Not a directory" in str(error) or "not a directory" in str(error)


def test_a_busy_sqlite_store_gives_up_within_its_timeout(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3", timeout_s=0.5, cool_down_s=COOL_DOWN_S)
    assert store.start()
    holder = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock and never lets go
    try:
        error, took = _fails(lambda: store.mark_jti(iss="a", jti="b", keep_until=2, now=1))
        assert 0.4 < took < 1.5
        assert "locked" in error.cause
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    time.sleep(COOL_DOWN_S)
    assert store.mark_jti(iss="a", jti="b", keep_until=2, now=1)


def test_a_locked_postgresql_table_gives_up_within_its_timeout(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, timeout_s=0.5, cool_down_s=COOL_DOWN_S)
    try:
        assert store.start()
        with psycopg.connect(postgres_url) as holder:
            holder.execute("LOCK TABLE jwt_replay IN ACCESS EXCLUSIVE MODE")
            error, took = _fails(lambda: store.mark_jti(iss="a", jti="b", keep_until=2, now=1))
            holder.rollback()
        assert 0.4 < took < 1.5
        assert "took longer than 0.5 s" in error.cause
        time.sleep(COOL_DOWN_S)
        assert store.mark_jti(iss="a", jti="b", keep_until=2, now=1)
    finally:
        store.close()


def test_a_hung_postgresql_is_cut_off_and_a_recovered_one_used_again(
        postgres: Cluster, postgres_url: str) -> None:
    with proxy_to(postgres.port) as proxy:
        url = postgres_url.replace(f":{postgres.port}/", f":{proxy.port}/")
        store = PostgresStore(url, timeout_s=0.5, cool_down_s=COOL_DOWN_S)
        try:
            assert store.start()
            assert store.mark_jti(iss="a", jti="1", keep_until=9, now=1)
            proxy.stall()  # connections stay open; the server never answers
            error, took = _fails(lambda: store.mark_jti(iss="a", jti="2", keep_until=9, now=1))
            assert 1.4 < took < 2.5, "the watchdog ends the wait at T + 1 s"
            assert f"127.0.0.1:{proxy.port}" in str(error)
            assert "no answer within 1.5 s" in error.cause
            proxy.down()
            time.sleep(COOL_DOWN_S)
            error, took = _fails(store.probe)
            assert took < 1.0
            proxy.up()
            deadline = time.monotonic() + 10
            while state_problem(store) is not None:
                assert time.monotonic() < deadline, "the store did not come back within 10 s"
                time.sleep(0.2)
            assert not store.mark_jti(iss="a", jti="1", keep_until=9, now=1)  # nothing lost
            assert store.mark_jti(iss="a", jti="2", keep_until=9, now=1)
        finally:
            store.close()


def test_a_restarted_postgresql_costs_callers_nothing(postgres_url: str) -> None:
    """Pooled connections that the server dropped are replaced before any work is sent."""
    store = PostgresStore(postgres_url, timeout_s=2)
    try:
        store.start()
        assert store.mark_jti(iss="a", jti="1", keep_until=9, now=1)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name = 'ipex-screen'")
        assert store.mark_jti(iss="a", jti="2", keep_until=9, now=1)
    finally:
        store.close()
