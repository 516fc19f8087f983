"""One NDJSON line -> the patient it belongs to, or why it cannot be used.

Every line is checked as JSON in full, but little of it is built as Python objects.
msgspec does that in one pass: it decodes a TypedDict of ``resourceType`` and ``id``,
takes ``subject`` and the fields :func:`service.screening.passes_over` looks at
(``PASSES_OVER_READS``) as raw JSON bytes, and skips the rest without building it:
0.85 us a Synthea line where orjson takes 1.5 us to build it all (a byte-level search for
``subject`` would be slower than either, and could be fooled by a contained
resource). The Patient a ``subject`` names and what ``passes_over`` says of a
``code`` and ``component`` are then remembered by their bytes: a Bulk export repeats
them line after line (ten million Synthea lines hold a few hundred distinct codes),
so each is decoded and asked once.

Whatever the fast path does not recognise (a line msgspec refuses, a subject that is
not a Patient, a Patient without a valid id) goes to :meth:`LineReader._read_fully`,
which parses the line with orjson and decides, as every line was read before; a line
that is not ASCII has its UTF-8 checked apart (msgspec does not check it in what it
skips). So a line is bad JSON exactly when orjson says so, with one exception: a
number too large for a float (``1e400``) in a field nobody reads, in a line the rules
pass over, is not noticed (RFC 8259 leaves number ranges to the reader; orjson
refuses them). Lines the rules read are parsed by orjson again when their patient is
screened. ``tests/test_population_lines.py`` compares every verdict with parsing the
whole line with orjson.

A line the screening would pass over (:func:`service.screening.passes_over`: a vital
sign, a routine lab, a diagnosis no rule reads; 98% of Synthea's Observations) is
not handed back: the reader keeps only where it was (:meth:`LineReader.take_passed`),
to count it and to report it if its patient turns out not to be in the export.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import msgspec
import orjson

from ..screening import PASSES_OVER_READS, RuleSet, passes_over
from .source import SCREENED_TYPES

# FHIR's id type: what a Patient id may be, and so what may name a partition key.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
PATIENT = "Patient"
OUTCOME = "OperationOutcome"


@dataclass(frozen=True, slots=True)
class Keyed:
    """A line that belongs to a patient and is kept: its resource type and the Patient id."""

    resource_type: str
    patient_id: str


@dataclass(frozen=True, slots=True)
class Unusable:
    """A line that cannot be screened: ``kind`` for counting, ``reason`` for a person."""

    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class Other:
    """A well-formed line of a type the rules do not read (or an export error)."""

    resource_type: str
    resource: Any = None


def patient_id(reference: Any) -> str | None:
    """``Patient/123``, ``https://ehr/fhir/Patient/123`` or ``Patient/123/_history/2`` -> 123."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or parts[-2] != PATIENT:
        return None
    return parts[-1] if _FHIR_ID.fullmatch(parts[-1]) else None


_CLINICAL = frozenset(SCREENED_TYPES) - {PATIENT}


class _Head(TypedDict, total=False):
    """What is taken of a line (the rest is checked and skipped): raw JSON bytes for
    the fields that are looked up by their bytes."""

    resourceType: Any
    id: Any
    subject: msgspec.Raw
    code: msgspec.Raw
    component: msgspec.Raw


# The verdicts are remembered by the bytes of exactly what passes_over looks at.
assert PASSES_OVER_READS == {"resourceType", "code", "component"}, "remember them all"
_head = msgspec.json.Decoder(_Head).decode
_decode = msgspec.json.decode
_REFUSED = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
BAD_JSON = Unusable("bad-json", "not valid JSON")
_NOT_AN_OBJECT = Unusable("not-a-resource", "not a JSON object")
_NO_TYPE = Unusable("not-a-resource", "no resourceType")
_NO_PATIENT_ID = Unusable("no-patient-id", "a Patient without a valid id")


def _utf8(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


class LineReader:
    """Classifies the lines of an export for one rule set.

    It runs on every line, so it is lean: one loop over a block, and what it has
    decided about a ``subject`` (its Patient id) or a ``code`` and ``component`` (does
    the screening pass over them?) remembered by their bytes, up to ``KEPT`` of each.
    The lines it passes over are gathered by patient and type until :meth:`take_passed`.
    """

    KEPT = 16384

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self._owners: dict[bytes, str] = {}  # "" when the subject names no Patient
        self._verdicts: dict[tuple[str, bytes | None, bytes | None], bool] = {}
        self._passed: dict[tuple[str, str], list[int]] = {}

    def read(self, numbered: Iterable[tuple[int, bytes]]
             ) -> Iterator[tuple[int, bytes, Keyed | Unusable | Other]]:
        """Each non-blank line's number, bytes and which patient it belongs to
        (its ``subject``; a Patient's own ``id``) or why it cannot be used; except the
        lines passed over, which are only gathered (:meth:`take_passed`).

        One loop for all the lines of a block, locals only: it runs once per line of
        the export (ten million times for 100,000 Synthea patients).
        """
        head, refused, clinical = _head, _REFUSED, _CLINICAL
        owners, verdicts, passed = self._owners, self._verdicts, self._passed
        for number, line in numbered:
            if not line:
                continue
            try:
                taken = head(line)  # JSON allows blanks around a value: no strip
                if not line.isascii() and not _utf8(line):
                    yield number, line, BAD_JSON
                    continue
                kind = taken.get("resourceType")
                if type(kind) is str and kind in clinical:
                    subject = taken.get("subject")
                    place = b"" if subject is None else bytes(subject)
                    owner = owners.get(place)
                    if owner is None:
                        owner = self._owner(place)
                    if owner:
                        code, component = taken.get("code"), taken.get("component")
                        key = (kind, None if code is None else bytes(code),
                               None if component is None else bytes(component))
                        over = verdicts.get(key)
                        if over is None:
                            over = self._passes_over(key)
                        if not over:
                            yield number, line, Keyed(kind, owner)
                            continue
                        numbers = passed.get((owner, kind))
                        if numbers is None:
                            passed[(owner, kind)] = [number]
                        else:
                            numbers.append(number)
                        continue
                elif kind == PATIENT:
                    rid = taken.get("id")
                    if type(rid) is str and _FHIR_ID.fullmatch(rid):
                        yield number, line, Keyed(kind, rid)
                        continue
                elif type(kind) is str and kind != OUTCOME:
                    yield number, line, Other(kind)
                    continue
            except refused:
                pass
            yield from self._read_fully(number, line)

    def _read_fully(self, number: int, line: bytes
                    ) -> Iterator[tuple[int, bytes, Keyed | Unusable | Other]]:
        """The line parsed in full by orjson, which decides everything (the reader
        before msgspec): what the fast path of :meth:`read` does not recognise."""
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                yield number, line, BAD_JSON
            return  # a line of blanks (or a \r left by a CRLF file) is no line
        if type(resource) is not dict:
            yield number, line, _NOT_AN_OBJECT
            return
        kind = resource.get("resourceType")
        if type(kind) is not str:
            yield number, line, _NO_TYPE
        elif kind in _CLINICAL:
            owner = patient_id(resource.get("subject"))
            if owner is None:
                yield number, line, Unusable("no-patient-subject",
                                             f"a {kind} whose subject is not a Patient")
            elif not passes_over(resource, self.rules):
                yield number, line, Keyed(kind, owner)
            else:
                self._passed.setdefault((owner, kind), []).append(number)
        elif kind == PATIENT:
            rid = resource.get("id")
            if type(rid) is not str or not _FHIR_ID.fullmatch(rid):
                yield number, line, _NO_PATIENT_ID
            else:
                yield number, line, Keyed(kind, rid)
        else:  # an export error's issues are counted, so it is kept whole
            yield number, line, Other(kind, resource if kind == OUTCOME else None)

    def _owner(self, place: bytes) -> str:
        """The Patient id a ``subject`` (its JSON bytes) names, or "" (may raise, as
        msgspec does on a number no float holds: the line is then read fully)."""
        owner = (patient_id(_decode(place)) or "") if place else ""
        if len(self._owners) >= self.KEPT:
            self._owners.clear()
        self._owners[place] = owner
        return owner

    def _passes_over(self, key: tuple[str, bytes | None, bytes | None]) -> bool:
        kind, code, component = key
        resource: dict[str, Any] = {"resourceType": kind}
        if code is not None:
            resource["code"] = _decode(code)
        if component is not None:
            resource["component"] = _decode(component)
        over = passes_over(resource, self.rules)
        if len(self._verdicts) >= self.KEPT:
            self._verdicts.clear()
        self._verdicts[key] = over
        return over

    def take_passed(self) -> dict[tuple[str, str], list[int]]:
        """(patient id, type) -> the numbers of the lines passed over since the last call."""
        passed = dict(self._passed)
        self._passed.clear()
        return passed
