"""The state replicas share: seen JWT ids (the replay check), CDS cards shown and feedback.

    store.py       the interface (StateStore), StateUnavailable, the fail-fast cool-down
    migrations.py  versioned schema migrations for both back ends
    sqlite.py      one SQLite file (IPEX_STATE_DB): the embedded default
    postgres.py    one PostgreSQL database (IPEX_STATE_URL) shared by every replica

:func:`open_store` picks the back end from the settings (``IPEX_STATE_URL`` wins);
:func:`state_problem` is the one-call check "can this service use its state store?"
for start-up checks and readiness. Nothing here imports Flask.
"""

from __future__ import annotations

from ..config import Settings
from .store import CardRow, FeedbackRow, StateStore, StateUnavailable

__all__ = ["CardRow", "FeedbackRow", "StateStore", "StateUnavailable", "open_store",
           "state_problem"]


def open_store(settings: Settings) -> StateStore:
    """The store the settings name; nothing is opened until it is first used."""
    if settings.state_url:
        from .postgres import PostgresStore

        return PostgresStore(settings.state_url, timeout_s=settings.state_timeout_s)
    from .sqlite import SqliteStore

    return SqliteStore(settings.state_db, timeout_s=settings.state_timeout_s)


def state_problem(store: StateStore) -> str | None:
    """None when the store can be written now; else why not (names where, no secrets)."""
    try:
        store.probe()
    except StateUnavailable as error:
        return str(error)
    return None
