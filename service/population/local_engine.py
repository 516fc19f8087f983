"""The single-machine engine: partition the export on disk, then screen partitions on all cores.

Workers are separate processes. Loading the rules takes about a second (the UCUM
parser), screening a child a tenth of a millisecond, so the workers start with the
rules this process has loaded: they are forked, when that is safe (on Linux, with no
other thread in this process; the objects alive then are frozen out of the GC so
the workers share their pages). Otherwise they are spawned and load the rules once,
in the pool's initializer. With one worker everything runs in this process.
"""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..profiles import load_profiles
from ..screening import RuleSet
from .lines import LineReader
from .partition import (
    PartitionResult,
    merged_outcomes,
    partition_block,
    partition_count,
    screen_partition,
)
from .patient import Screener
from .progress import Progress
from .source import Block, BlockPlace, ExportFile, estimated_bytes, read_blocks
from .tally import ExportTally

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ScreeningSpec:
    """What every worker needs to build its own Screener: plain, picklable values."""

    profiles_dir: str
    as_of: dt.date
    order_code: tuple[str, str] | None = None

    def screener(self, rules: RuleSet | None = None) -> Screener:
        """A Screener with ``rules`` (already loaded from ``profiles_dir``), or loading them."""
        if rules is None:
            rules = load_profiles(Path(self.profiles_dir)).rules
        return Screener(rules, self.as_of, self.order_code)


@dataclass(slots=True)
class EngineRun:
    """An engine's result: outcomes sorted by patient id (wire bytes) and the counts."""

    outcomes: Iterator[bytes]
    tally: ExportTally
    patients: int


_WORKER: Screener | None = None
_READER: LineReader | None = None


def _init_worker(spec: ScreeningSpec) -> None:
    global _WORKER, _READER
    if _WORKER is None:  # spawned; a forked worker has the parent's
        _WORKER = spec.screener()
        _READER = LineReader(_WORKER.rules)


def can_fork() -> bool:
    """Forking is safe on Linux when this process runs no other thread (whose locks a
    child would inherit held)."""
    return sys.platform == "linux" and threading.active_count() == 1


def _pool(spec: ScreeningSpec, rules: RuleSet | None, workers: int) -> ProcessPoolExecutor:
    global _WORKER, _READER
    context = "spawn"
    if rules is not None and can_fork():
        _WORKER = spec.screener(rules)
        _READER = LineReader(rules)
        context = "fork"
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                               initargs=(spec,), mp_context=multiprocessing.get_context(context))
    pool.submit(int)  # forks every worker now, before a progress bar starts its thread
    return pool


def _partition_task(block: Block | BlockPlace, directory: Path, count: int
                    ) -> tuple[int, ExportTally]:
    assert _READER is not None, "the pool initializer loads the rules"
    if isinstance(block, BlockPlace):
        block = block.read()
    return block.raw_bytes, partition_block(block, directory, count, writer=str(os.getpid()),
                                            reader=_READER)


def _screen_task(index: int, directory: Path, results: Path) -> PartitionResult:
    assert _WORKER is not None, "the pool initializer loads the rules"
    return screen_partition(directory, index, _WORKER, results)


def run_local(files: list[ExportFile], spec: ScreeningSpec, *, work_dir: Path,
              workers: int, progress: Callable[..., Progress] = Progress,
              rules: RuleSet | None = None) -> EngineRun:
    """Group and screen an export; ``work_dir`` holds the partitions (deleted by the caller).

    ``rules``: the spec's rules when the caller has loaded them (one process, or
    forked workers, then do not load them again).
    """
    global _WORKER, _READER
    parts, results = work_dir / "partitions", work_dir / "results"
    parts.mkdir(parents=True)
    results.mkdir()
    total_bytes = estimated_bytes(files)
    count = partition_count(total_bytes)
    tally = ExportTally()
    if workers <= 1:
        screener = spec.screener(rules)
        reader = LineReader(screener.rules)
        pool: Executor | None = None
    else:
        gc.freeze()
        pool = _pool(spec, rules, workers)
    try:
        reading = progress("reading export", total_bytes, unit="MB", scale=1 << 20)
        if pool is None:
            for block in (b for f in files for b in read_blocks(f)):
                tally.merge(partition_block(block, parts, count, writer="main",
                                             reader=reader))
                reading.advance(block.raw_bytes)
        else:
            # Workers read uncompressed blocks again by place (from the page cache)
            # rather than receive 8 MB through a pipe.
            places = (b.place(f) or b for f in files for b in read_blocks(f))
            for size, block_tally in bounded(pool, _partition_task, places, parts, count,
                                             window=2 * workers):
                tally.merge(block_tally)
                reading.advance(size)
        reading.close()
        patients = tally.screened_types["Patient"]
        screening = progress("screening", patients, unit="patients")
        if pool is None:
            for index in range(count):
                done = screen_partition(parts, index, screener, results)
                tally.problems.merge(done.problems)
                screening.advance(done.screened)
        else:
            for done in bounded(pool, _screen_task, range(count), parts, results,
                                window=2 * workers):
                tally.problems.merge(done.problems)
                screening.advance(done.screened)
        screening.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
            _WORKER = _READER = None
            gc.unfreeze()
    return EngineRun(merged_outcomes(results, count), tally, patients)


def bounded(pool: Executor, fn: Callable[..., R], items: Iterable[Any], *args: Any,
            window: int) -> Iterator[R]:
    """``pool.map`` with at most ``window`` tasks in flight (and in memory), any order."""
    pending: set[Future[R]] = set()
    for item in items:
        pending.add(pool.submit(fn, item, *args))
        if len(pending) >= window:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()
