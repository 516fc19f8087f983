"""Grouping an export by patient with bounded memory: hashed partitions on disk.

Phase 1 reads every line once and appends it to one of N partition files chosen by
a stable hash (CRC-32) of its Patient id, so all of a patient's lines, from every
file of the export, land in the same partition. Phase 2 loads one partition at a
time, groups it in a dict and screens each patient. N is the export's size over
``PARTITION_BYTES``, so a partition holds at most about that much even when nothing
is passed over (usually it holds a few percent of it). Peak memory is set by the
partition size, not by the export: N grows with it.

Why partitions rather than SQLite: the work is one sequential write and one
sequential read per line, with no index to maintain (SQLite would keep a B-tree on
patient id and store every line twice), appends from several worker processes
need no locking (each worker writes its own files), and the same layout is what
Spark does in its shuffle, so both engines group the same way.

Lines the screening passes over (:attr:`lines.Keyed.passed_over`: vital signs,
routine labs) are not written: only where they were, one record per patient, type
and block, so that an unknown patient's lines are all still reported.

A partition record is one line: ``patient-id TAB type TAB file TAB line TAB json``
for a kept line, ``patient-id TAB type TAB file TAB ranges`` (``12-40,45``) for
passed-over ones. Patient ids are FHIR ids (``[A-Za-z0-9-.]{1,64}``) and NDJSON
lines hold no newline, so the record needs no escaping.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .lines import Keyed, LineReader
from .patient import Line, PassedOver, Screener, gc_paused, line_ranges
from .problems import Problems
from .source import Block
from .tally import ExportTally

PARTITION_BYTES = 32 << 20
MAX_PARTITIONS = 1000  # past ~32 GB partitions grow instead: the merge keeps one file open each


def partition_count(estimated_bytes: int) -> int:
    return max(1, min(MAX_PARTITIONS, math.ceil(estimated_bytes / PARTITION_BYTES)))


def partition_of(patient_id: str, count: int) -> int:
    """Stable across processes and runs (Python's own ``hash`` of a str is not)."""
    return zlib.crc32(patient_id.encode()) % count


def partition_block(block: Block, directory: Path, count: int, writer: str,
                    reader: LineReader) -> ExportTally:
    """Phase 1: append each usable line of a block to its patient's partition file
    (only the place of those the screening passes over)."""
    tally = ExportTally()
    buffers: dict[int, list[bytes]] = defaultdict(list)
    file_index = block.file_index
    numbered = enumerate(block.data.split(b"\n")[:-1], block.first_line)
    for number, line, classified in reader.read(numbered):
        tally.count(file_index, number, classified)
        if type(classified) is Keyed:
            pid, kind = classified.patient_id, classified.resource_type
            buffers[partition_of(pid, count)].append(
                b"%s\t%s\t%d\t%d\t%s\n" % (pid.encode(), kind.encode(), file_index, number,
                                           line))
    passed = reader.take_passed()
    tally.count_passed(passed)
    for (pid, kind), numbers in passed.items():
        buffers[partition_of(pid, count)].append(
            b"%s\t%s\t%d\t%s\n" % (pid.encode(), kind.encode(), file_index,
                                   line_ranges(numbers).encode()))
    for index, records in buffers.items():
        with open(directory / f"p{index:05d}.{writer}", "ab") as handle:
            handle.write(b"".join(records))
    return tally


def read_partition(directory: Path, index: int) -> dict[str, list[Line | PassedOver]]:
    """Phase 2: one partition's lines grouped by patient id."""
    groups: dict[str, list[Line | PassedOver]] = defaultdict(list)
    for path in sorted(directory.glob(f"p{index:05d}.*")):
        with open(path, "rb") as handle:
            for record in handle:
                fields = record[:-1].split(b"\t", 4)
                if len(fields) == 5:
                    groups[fields[0].decode()].append(
                        Line(int(fields[2]), int(fields[3]), fields[1].decode(), fields[4]))
                else:
                    groups[fields[0].decode()].append(
                        PassedOver(int(fields[2]), fields[1].decode(), fields[3].decode()))
    return groups


@dataclass(slots=True)
class PartitionResult:
    patients: int
    screened: int
    problems: Problems


def screen_partition(directory: Path, index: int, screener: Screener, results: Path
                     ) -> PartitionResult:
    """Screen every patient of one partition; outcomes go to a file sorted by patient id."""
    groups = read_partition(directory, index)
    problems = Problems()
    screened = 0
    with open(results / f"r{index:05d}.ndjson", "wb") as handle, gc_paused():
        for pid in sorted(groups):
            lines, passed = split_passed_over(groups[pid])
            outcome = screener.screen(pid, lines, problems, passed)
            if outcome is not None:
                screened += 1
                handle.write(pid.encode() + b"\t" + outcome.to_wire() + b"\n")
    return PartitionResult(len(groups), screened, problems)


def split_passed_over(group: list[Line | PassedOver]) -> tuple[list[Line], list[PassedOver]]:
    lines: list[Line] = []
    passed: list[PassedOver] = []
    for item in group:
        if isinstance(item, Line):
            lines.append(item)
        else:
            passed.append(item)
    return lines, passed


def merged_outcomes(results: Path, count: int) -> Iterator[bytes]:
    """Every partition's outcomes in one stream sorted by patient id (a k-way merge)."""
    import heapq
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count + 64:
        wanted = count + 64 if hard == resource.RLIM_INFINITY else min(hard, count + 64)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    handles = [open(results / f"r{i:05d}.ndjson", "rb") for i in range(count)]
    try:
        for record in heapq.merge(*handles, key=lambda r: r.split(b"\t", 1)[0]):
            yield record.split(b"\t", 1)[1].rstrip(b"\n")
    finally:
        for handle in handles:
            handle.close()
