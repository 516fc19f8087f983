"""The Spark engine: the same grouping and the same core, on a Spark cluster (or local mode).

Spark reads the same NDJSON (``textFile``, gzip included), numbers each file's
lines (``zipWithIndex``, so problems name the same file and line as the local
engine), keys each line by Patient id with :class:`lines.LineReader`, groups by key
(Spark's shuffle plays the role of the local engine's partition files), and
screens each group with :class:`patient.Screener`. As in the local engine, the
lines screening passes over do not go through the shuffle: only their places do,
one :class:`patient.PassedOver` per patient, type and file of a Spark partition.
The rules are loaded once per Python worker, lazily, in a module global (Spark
reuses its Python workers).
The counts of the reading step travel through the same shuffle under the key
``""`` (never a FHIR id), so the export is read once.

Outcomes come back to the driver sorted by patient id (``sortByKey`` on a
persisted RDD, then ``toLocalIterator``: one partition at a time in memory), and
the driver writes the same four outputs as the local engine.

pyspark is an optional extra: ``pip install ipex-screen[spark]`` (and Java 17+).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .lines import Keyed, LineReader
from .local_engine import EngineRun, ScreeningSpec
from .partition import partition_count, split_passed_over
from .patient import Line, PassedOver, Screener, gc_paused, line_ranges
from .problems import Problems
from .progress import Progress
from .source import ExportFile, estimated_bytes
from .tally import ExportTally

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

COUNTS_KEY = ""  # sorts before every patient id; FHIR ids are never empty
_SCREENER: Screener | None = None
_READER: LineReader | None = None


class SparkUnavailable(RuntimeError):
    """pyspark (or Java) is missing; the message says what to install."""


def local_session(*, master: str = "local[*]", shuffle_partitions: int = 8) -> SparkSession:
    """A quiet Spark session for one machine (what ``--engine spark`` starts)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable(
            "the spark engine needs pyspark: pip install 'ipex-screen[spark]' "
            "(and Java 17 or later)") from None
    # The executors' Python must be this one, with this package installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # One machine: bind to loopback only (and skip the "resolves to a loopback" warning).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log_config = Path(__file__).with_name("spark-log4j2.properties")
    session = (
        SparkSession.builder.master(master)
        .appName("ipex-screen population")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log_config}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _screener(spec: ScreeningSpec) -> Screener:
    global _SCREENER, _READER
    if _SCREENER is None or (_SCREENER.as_of, _SCREENER.order_code) != (
            spec.as_of, spec.order_code):
        _SCREENER = spec.screener()
        _READER = LineReader(_SCREENER.rules)
    return _SCREENER


def _reader(spec: ScreeningSpec) -> LineReader:
    _screener(spec)
    assert _READER is not None
    return _READER


def _classify_lines(spec: ScreeningSpec) -> Callable[[Iterable[tuple[int, int, bytes]]],
                                                     Iterator[tuple[str, Any]]]:
    def classify(rows: Iterable[tuple[int, int, bytes]]) -> Iterator[tuple[str, Any]]:
        """(file, line, bytes) -> (patient id, Line), then where the passed-over lines
        are, then this partition's counts."""
        reader = _reader(spec)
        reader.take_passed()  # nothing left from a task that failed in this worker
        tally = ExportTally()
        # A partition of textFile holds lines of one file; grouping keeps that general.
        for file_index, group in itertools.groupby(rows, key=itemgetter(0)):
            for number, line, classified in reader.read((n, raw) for _, n, raw in group):
                tally.count(file_index, number, classified)
                if isinstance(classified, Keyed):
                    yield classified.patient_id, Line(file_index, number,
                                                      classified.resource_type, line)
            yield from _passed_over(reader, file_index, tally)
        yield COUNTS_KEY, ("tally", tally)
    return classify


def _passed_over(reader: LineReader, file_index: int, tally: ExportTally
                 ) -> Iterator[tuple[str, PassedOver]]:
    passed = reader.take_passed()
    tally.count_passed(passed)
    for (pid, kind), numbers in passed.items():
        yield pid, PassedOver(file_index, kind, line_ranges(numbers))


def _screen_groups(spec: ScreeningSpec) -> Callable[[Iterable[tuple[str, Iterable[Any]]]],
                                                     Iterator[tuple[str, Any]]]:
    def screen(groups: Iterable[tuple[str, Iterable[Any]]]) -> Iterator[tuple[str, Any]]:
        problems = Problems()
        for key, values in groups:
            if key == COUNTS_KEY:
                for value in values:
                    yield COUNTS_KEY, value
                continue
            lines, passed = split_passed_over(list(values))
            with gc_paused():
                outcome = _screener(spec).screen(key, lines, problems, passed)
            if outcome is not None:
                yield key, outcome.to_wire()
        yield COUNTS_KEY, ("problems", problems)
    return screen


def _numbering(file_index: int) -> Callable[[tuple[Any, int]], tuple[int, int, bytes]]:
    # textFile(use_unicode=False) gives bytes, though pyspark's stubs say str.
    def number(pair: tuple[Any, int]) -> tuple[int, int, bytes]:
        return file_index, pair[1] + 1, pair[0]
    return number


def run_spark(files: list[ExportFile], spec: ScreeningSpec, *, work_dir: Path,
              progress: Callable[..., Progress] = Progress,
              spark: SparkSession | None = None, stop_session: bool = False) -> EngineRun:
    """Group and screen an export with Spark (``spark`` defaults to a local session).

    The outcomes stream from the cluster while the caller writes them; the session
    is stopped after the last one when ``stop_session`` (or when it was made here).
    """
    from pyspark import StorageLevel

    session = spark or local_session()
    stop = stop_session or spark is None
    sc = session.sparkContext
    count = partition_count(estimated_bytes(files))
    numbered = [sc.textFile(str(f.path), use_unicode=False).zipWithIndex().map(
        _numbering(f.index)) for f in files]
    rows = sc.union(numbered) if len(numbered) > 1 else numbered[0]
    screened = (rows.mapPartitions(_classify_lines(spec))
                .groupByKey(numPartitions=count)
                .mapPartitions(_screen_groups(spec)))
    screened.persist(StorageLevel.MEMORY_AND_DISK)
    print("spark: reading, grouping and screening the export", file=sys.stderr)
    ordered: Iterator[tuple[str, Any]] = screened.sortByKey(
        numPartitions=count).toLocalIterator()
    tally = ExportTally()
    first: tuple[str, Any] | None = None
    for key, value in ordered:
        if key != COUNTS_KEY:
            first = (key, value)
            break
        kind, part = value
        if kind == "tally":
            tally.merge(part)
        else:
            tally.problems.merge(part)
    rest = itertools.chain([first] if first else [], ordered)

    def outcomes() -> Iterator[bytes]:
        try:
            for _key, wire in rest:
                yield wire
        finally:
            screened.unpersist()
            if stop:
                session.stop()

    return EngineRun(outcomes(), tally, tally.screened_types["Patient"])
