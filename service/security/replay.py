"""The replay check: each ``jti`` is used once while its token lives, across every replica.

Seen ids are kept in the shared state store (:mod:`service.state`) until the token's
``exp`` plus the leeway; expired ones are pruned at most once a minute per process.
A store that cannot be reached raises :class:`~service.state.StateUnavailable`: the
caller answers 503 (the check could not be made), never 401 (which would blame the
caller's token).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..state import StateStore, StateUnavailable


class ReplayStore:
    """Every ``jti`` seen, until its token expires."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, store: StateStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._pruned_at = float("-inf")
        self._lock = threading.Lock()

    def first_use(self, *, iss: str, jti: str, keep_until: int) -> bool:
        """Record ``jti``; False when a token still alive already used it.

        Raises StateUnavailable when the store cannot say.
        """
        now = int(self._clock())
        fresh = self.store.mark_jti(iss=iss, jti=jti, keep_until=keep_until, now=now)
        with self._lock:
            due = now - self._pruned_at >= self.PRUNE_EVERY_S
            if due:
                self._pruned_at = now
        if due:
            try:
                self.store.prune_jtis(now=now)
            except StateUnavailable:
                pass  # the store logged it; the check itself was made
        return fresh

    def count(self) -> int:
        """How many ``jti`` are kept (for tests and operators)."""
        return self.store.count_jtis()
