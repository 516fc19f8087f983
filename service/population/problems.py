"""Unusable lines and patients: every one counted by kind, the first ones listed by place.

Nothing here holds patient data: a problem is a file, a line number, a kind and a
reason written by this program.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LISTED = 1000


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file_index: int
    line: int
    kind: str
    reason: str


@dataclass(slots=True)
class Problems:
    """Counts by kind and the ``LISTED`` earliest problems (by file, then line).

    Which ones are listed does not depend on the order they were found in, so
    every engine and every worker count lists the same ones.
    """

    counts: Counter[str] = field(default_factory=Counter)
    _kept: list[tuple[int, int, str, str]] = field(default_factory=list)  # a max-heap, negated

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        self._keep((-problem.file_index, -problem.line, problem.kind, problem.reason))

    def merge(self, other: Problems) -> None:
        self.counts.update(other.counts)
        for item in other._kept:
            self._keep(item)

    def _keep(self, item: tuple[int, int, str, str]) -> None:
        if len(self._kept) < LISTED:
            heapq.heappush(self._kept, item)
        elif item > self._kept[0]:
            heapq.heapreplace(self._kept, item)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def listed(self) -> list[Problem]:
        return sorted(Problem(-f, -line, kind, reason) for f, line, kind, reason in self._kept)

    def to_wire(self) -> dict[str, Any]:
        """A plain form to send between processes (and Spark tasks)."""
        return {"counts": dict(self.counts), "kept": [list(k) for k in self._kept]}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Problems:
        problems = cls(counts=Counter(wire["counts"]))
        problems._kept = [(int(f), int(n), str(k), str(r)) for f, n, k, r in wire["kept"]]
        heapq.heapify(problems._kept)
        return problems
