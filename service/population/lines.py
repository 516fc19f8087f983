"""One NDJSON line -> the patient it belongs to, or why it cannot be used.

Every line is checked as JSON in full, but only the fields this reader needs are
built as Python objects: ``resourceType``, ``id``, ``subject`` and what
:func:`service.screening.passes_over` looks at (``PASSES_OVER_READS``). msgspec does
that in one pass (decoding into a TypedDict of those fields, skipping the rest of
the line without building it), in half the time orjson takes to build the whole
line; a byte-level search for ``subject`` would be slower than either and could be
fooled by a contained resource. A line msgspec refuses is parsed again by orjson,
which decides (so a top-level array is "not a resource", as before); a line that is
not ASCII has its UTF-8 checked apart, as msgspec does not check it in what it skips.
So a line is bad JSON exactly when orjson says so, with one exception: a number too
large for a float (``1e400``) in a field nobody reads, in a line the rules pass over,
is not noticed (RFC 8259 leaves number ranges to the reader; orjson refuses them).
Lines the rules read are parsed by orjson again when their patient is screened.

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
    """The fields of a line that are built; the rest is checked and skipped."""

    resourceType: Any
    id: Any
    subject: Any
    code: Any
    component: Any


assert PASSES_OVER_READS <= _Head.__annotations__.keys(), "passes_over needs more fields"
_head = msgspec.json.Decoder(_Head).decode
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

    It runs on every line, so it is lean: the clinical types first, and the Patient id
    of each ``subject`` reference remembered (a Bulk export lists a patient's resources
    one after the other), up to ``KEPT_REFERENCES`` of them. The lines it passes over
    are gathered by patient and type until :meth:`take_passed`.
    """

    KEPT_REFERENCES = 4096

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self._owners: dict[str, str | None] = {}
        self._passed: dict[tuple[str, str], list[int]] = {}

    def read(self, numbered: Iterable[tuple[int, bytes]]
             ) -> Iterator[tuple[int, bytes, Keyed | Unusable | Other]]:
        """Each non-blank line's number, bytes and which patient it belongs to
        (its ``subject``; a Patient's own ``id``) or why it cannot be used; except the
        lines passed over, which are only gathered (:meth:`take_passed`).

        One loop for all the lines of a block, locals only: it runs once per line of
        the export (ten million times for 100,000 Synthea patients).
        """
        head, refused = _head, _REFUSED
        owners, passed, rules = self._owners, self._passed, self.rules
        for number, line in numbered:
            if not line:
                continue
            try:
                resource: Any = head(line)  # JSON allows blanks around a value: no strip
            except refused:
                try:
                    resource = orjson.loads(line)
                except orjson.JSONDecodeError:
                    if line.strip():
                        yield number, line, BAD_JSON
                    continue  # a line of blanks (or a \r left by a CRLF file) is no line
            if not line.isascii() and not _utf8(line):
                yield number, line, BAD_JSON
                continue
            if type(resource) is not dict:
                yield number, line, _NOT_AN_OBJECT
                continue
            kind = resource.get("resourceType")
            if type(kind) is not str:
                yield number, line, _NO_TYPE
            elif kind in _CLINICAL:
                subject = resource.get("subject")
                ref = subject.get("reference") if type(subject) is dict else None
                owner = owners.get(ref) if type(ref) is str else None
                if owner is None:
                    owner = self._owner(ref, subject)
                    if owner is None:
                        yield number, line, Unusable(
                            "no-patient-subject", f"a {kind} whose subject is not a Patient")
                        continue
                if not passes_over(resource, rules):
                    yield number, line, Keyed(kind, owner)
                    continue
                numbers = passed.get((owner, kind))
                if numbers is None:
                    passed[(owner, kind)] = [number]
                else:
                    numbers.append(number)
            elif kind == PATIENT:
                rid = resource.get("id")
                if type(rid) is not str or not _FHIR_ID.fullmatch(rid):
                    yield number, line, _NO_PATIENT_ID
                else:
                    yield number, line, Keyed(kind, rid)
            elif kind != OUTCOME:
                yield number, line, Other(kind)
            else:  # an export error: its issues are counted, so it is read in full
                try:
                    yield number, line, Other(kind, orjson.loads(line))
                except orjson.JSONDecodeError:
                    yield number, line, BAD_JSON

    def take_passed(self) -> dict[tuple[str, str], list[int]]:
        """(patient id, type) -> the numbers of the lines passed over since the last call."""
        passed = dict(self._passed)
        self._passed.clear()
        return passed

    def _owner(self, ref: Any, subject: Any) -> str | None:
        owner = patient_id(subject)
        if owner is not None and type(ref) is str:
            if len(self._owners) >= self.KEPT_REFERENCES:
                self._owners.clear()
            self._owners[ref] = owner
        return owner
