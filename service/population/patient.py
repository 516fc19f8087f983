"""One patient's lines -> an in-memory collection Bundle -> the core -> a PatientOutcome.

The RiskAssessment is made deterministic so that a re-run on the same export with
the same ``--as-of`` writes identical bytes: its ``id`` is a UUID v5 of the patient
id, the as-of date and the rule set version, and ``occurrenceDateTime`` is the
as-of date at midnight UTC (a population run screens *as of* that day).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter

import orjson

from ..screening import RuleSet, ScreeningError, screen_bundle
from ..screening.risk_assessment import risk_assessment
from .core_view import not_read_kind, read_result
from .lines import BAD_JSON, PATIENT
from .problems import Problem, Problems

RISK_ASSESSMENT_NAMESPACE = uuid.UUID("6c1f8f0e-5a52-5d7c-9d0c-1f0e2a3b4c5d")
_PLACE = attrgetter("file_index", "line")
_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while screening a batch of patients.

    Each child's parsed resources are freed by reference counting; what the cyclic
    GC adds is a walk over everything alive (the loaded rules, the partition) every
    few hundred new dicts: measured at 15-25% of the screening CPU time. It runs
    again between batches.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Line:
    """One export line of a patient, with where it came from."""

    file_index: int
    line: int
    resource_type: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class PassedOver:
    """Lines of one patient, type and file that screening passes over: where they are only.

    ``lines`` are 1-based line numbers as ranges (``"12-40,45"``). They matter only
    if the patient is not in the export: then each is an unknown-patient line.
    """

    file_index: int
    resource_type: str
    lines: str

    def numbers(self) -> Iterator[int]:
        for part in self.lines.split(","):
            first, _, last = part.partition("-")
            yield from range(int(first), int(last or first) + 1)


def line_ranges(numbers: list[int]) -> str:
    """Ascending line numbers as ranges: [3, 4, 5, 9] -> ``"3-5,9"``."""
    parts = []
    start = previous = numbers[0]
    for number in numbers[1:]:
        if number != previous + 1:
            parts.append(f"{start}-{previous}" if previous > start else str(start))
            start = number
        previous = number
    parts.append(f"{start}-{previous}" if previous > start else str(start))
    return ",".join(parts)


@dataclass(slots=True)
class PatientOutcome:
    """What the outputs need of one screened patient (plain data, cheap to ship).

    ``not_read``: what the core could not read in this child's record, as
    ``[file index, line, where, reason]`` (``where`` is the field, e.g.
    ``Condition.onsetDateTime``).
    """

    patient_id: str
    flagged: bool
    tier: str
    row: int
    recommendation: str | None
    test: str | None
    suppressed: bool
    evidence: str
    criterion_ages: dict[str, float]
    not_counted: dict[str, int]
    not_read: list[tuple[int, int, str, str]]
    risk_assessment: bytes

    def to_wire(self) -> bytes:
        """One line: the fields as JSON, a tab, the RiskAssessment's JSON as it will be
        written (orjson writes no raw tab or newline), so writing it needs no second parse."""
        return orjson.dumps([
            self.patient_id, self.flagged, self.tier, self.row, self.recommendation,
            self.test, self.suppressed, self.evidence, self.criterion_ages, self.not_counted,
            self.not_read]) + b"\t" + self.risk_assessment

    @classmethod
    def from_wire(cls, data: bytes) -> PatientOutcome:
        head, risk = data.split(b"\t", 1)
        p, f, t, r, rec, test, s, e, a, n, nr = orjson.loads(head)
        return cls(p, f, t, r, rec, test, s, e, a, n, [(w, x, y, z) for w, x, y, z in nr], risk)


@dataclass(slots=True)
class Screener:
    """Screens patients as of a date with loaded rules; holds no state between patients."""

    rules: RuleSet
    as_of: dt.date
    order_code: tuple[str, str] | None = None
    computed_at: dt.datetime = field(init=False)

    def __post_init__(self) -> None:
        self.computed_at = dt.datetime.combine(self.as_of, dt.time(), tzinfo=dt.UTC)

    def screen(self, patient_id: str, lines: list[Line], problems: Problems,
               passed: Iterable[PassedOver] = ()) -> PatientOutcome | None:
        """Screen one patient's lines (``passed``: those the screening passes over);
        problems found are added to ``problems``."""
        parsed = []
        for x in sorted(lines, key=_PLACE):
            try:
                parsed.append((x, orjson.loads(x.raw)))
            except orjson.JSONDecodeError:  # orjson refuses what the line reader let by
                problems.add(Problem(x.file_index, x.line, BAD_JSON.kind, BAD_JSON.reason))
        patients = [x for x in parsed if x[0].resource_type == PATIENT]
        if not patients:
            unknown = [(x.file_index, x.line, x.resource_type) for x, _ in parsed] + [
                (p.file_index, n, p.resource_type) for p in passed for n in p.numbers()]
            for file_index, line, kind in unknown:
                problems.add(Problem(file_index, line, "unknown-patient",
                                     f"a {kind} whose Patient is not in the export"))
            return None
        for extra, _ in patients[1:]:
            problems.add(Problem(extra.file_index, extra.line, "duplicate-patient",
                                 "a second Patient with the same id (the first one is used)"))
        entries = [patients[0]] + [x for x in parsed if x[0].resource_type != PATIENT]
        kept = [x for x, _ in entries]
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": resource} for _, resource in entries]}
        try:
            (result,) = screen_bundle(bundle, self.rules, as_of=self.as_of,
                                      order_code=self.order_code)
        except ScreeningError as exc:
            problems.add(Problem(kept[0].file_index, kept[0].line, "not-screened",
                                 not_read_kind(_ENTRY.sub("Patient", exc.diagnostics))))
            return None
        reading = read_result(result)
        resource = risk_assessment(
            result, self.rules, computed_at=self.computed_at,
            resource_id=uuid5(RISK_ASSESSMENT_NAMESPACE,
                              f"{patient_id}|{self.as_of.isoformat()}|{self.rules.version}"),
        )
        return PatientOutcome(
            patient_id=patient_id,
            flagged=reading.flagged,
            tier=reading.tier,
            row=reading.row,
            recommendation=reading.recommendation,
            test=reading.test,
            suppressed=reading.suppressed,
            evidence=reading.evidence,
            criterion_ages=reading.criterion_ages,
            not_counted=dict(reading.not_counted),
            not_read=[_placed(location, reason, kept) for location, reason in reading.not_read],
            risk_assessment=orjson.dumps(resource),
        )


def uuid5(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, without building a UUID object (a third of
    the time of a patient's outcome outside the core went there)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _placed(location: str, reason: str, kept: list[Line]) -> tuple[int, int, str, str]:
    """A core location (``Bundle.entry[3].resource.code``) as export file, line and field."""
    match = _ENTRY.match(location)
    line = kept[int(match.group(1))] if match and int(match.group(1)) < len(kept) else kept[0]
    field_path = location[match.end():].removeprefix(".resource") if match else ""
    return line.file_index, line.line, line.resource_type + field_path, not_read_kind(reason)
