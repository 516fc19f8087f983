"""The worker's inline dispatcher: the parsed body outlives the answer, never two bodies.

The app asks the server to hold what it parsed (``RELEASE_AFTER_ANSWER``) so that
freeing a large record happens after the answer is sent, not before. What a hospital
relies on: memory stays that of one request per worker (a burst of large posts is not
all held at once), and the cyclic GC comes back on once the body is gone.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from service.serving.worker import InlineDispatcher


class Parsed(dict[str, Any]):
    """A parsed body that a weak reference can watch."""


class Task:
    def __init__(self, seen: list[tuple[str, bool, list[bool]]], name: str,
                 earlier: list[weakref.ref[Parsed]]) -> None:
        self.name, self.seen, self.earlier = name, seen, earlier
        self.held: list[Any] = []

    def service(self) -> None:
        body = Parsed(name=self.name)
        self.held.append(body)  # what read_json does with the environ's list
        self.seen.append((self.name, gc.isenabled(), [ref() is None for ref in self.earlier]))
        self.earlier.append(weakref.ref(body))


@pytest.fixture()
def gc_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_last_body_is_held_until_release_with_the_gc_paused(gc_enabled: None) -> None:
    dispatcher, seen, refs = InlineDispatcher(), [], []  # type: ignore[var-annotated]
    dispatcher.add_task(Task(seen, "a", refs))
    dispatcher.run_pending()
    assert seen == [("a", False, [])]  # the app ran with the GC paused
    assert refs[0]() is not None and not gc.isenabled()  # held after the answer
    dispatcher.release()  # after the loop's turn that sends the answer
    assert refs[0]() is None and gc.isenabled()


def test_a_burst_holds_one_body_at_a_time(gc_enabled: None) -> None:
    dispatcher, seen, refs = InlineDispatcher(), [], []  # type: ignore[var-annotated]
    for name in "abc":
        dispatcher.add_task(Task(seen, name, refs))
    dispatcher.run_pending()
    # Each request ran after every earlier body was freed.
    assert seen == [("a", False, []), ("b", False, [True]), ("c", False, [True, True])]
    dispatcher.release()
    assert all(ref() is None for ref in refs) and gc.isenabled()


def test_a_paused_gc_stays_paused() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        dispatcher, seen, refs = InlineDispatcher(), [], []  # type: ignore[var-annotated]
        dispatcher.add_task(Task(seen, "a", refs))
        dispatcher.run_pending()
        dispatcher.release()
        assert refs[0]() is None and not gc.isenabled()
    finally:
        if was:
            gc.enable()

