"""One NDJSON line -> the patient it belongs to, or why it cannot be used.

Every line is parsed in full with orjson: measured on Synthea Observations, that is
faster than any byte-level search for ``subject`` (1.8 us against 2.5 us a line),
and it is the only way to be sure the reference found is the resource's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from .source import SCREENED_TYPES

# FHIR's id type: what a Patient id may be, and so what may name a partition key.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
PATIENT = "Patient"
OUTCOME = "OperationOutcome"


@dataclass(frozen=True, slots=True)
class Keyed:
    """A line that belongs to a patient: its resource type and the Patient id."""

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


def classify(line: bytes) -> Keyed | Unusable | Other:
    """Which patient a line belongs to (its ``subject``; a Patient's own ``id``)."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Unusable("bad-json", "not valid JSON")
    if not isinstance(resource, dict):
        return Unusable("not-a-resource", "not a JSON object")
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        return Unusable("not-a-resource", "no resourceType")
    if kind == PATIENT:
        rid = resource.get("id")
        if not isinstance(rid, str) or not _FHIR_ID.fullmatch(rid):
            return Unusable("no-patient-id", "a Patient without a valid id")
        return Keyed(kind, rid)
    if kind not in SCREENED_TYPES:
        return Other(kind, resource if kind == OUTCOME else None)
    owner = patient_id(resource.get("subject"))
    if owner is None:
        return Unusable("no-patient-subject", f"a {kind} whose subject is not a Patient")
    return Keyed(kind, owner)
