"""Facts: what a child's record says, typed, once it has been read.

The reading step (:mod:`.record`, with the field readers of :mod:`.fhir_fields`) turns
every Bundle entry the rules read into one of these, or into a :class:`NotRead` that
says where it was and why it could not be used. Nothing downstream reads raw JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Sex = Literal["male", "female", "unknown"]
_EXCLUDED_CONDITION_STATUS = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Concept:
    """A CodeableConcept: its usable codings and its text."""

    codings: tuple[Coding, ...] = ()
    text: str | None = None

    @property
    def first_code(self) -> str | None:
        return self.codings[0].code if self.codings else None

    def texts(self) -> Iterator[str]:
        """The concept's text and each coding's display."""
        if self.text:
            yield self.text
        for coding in self.codings:
            if coding.display:
                yield coding.display


NO_CONCEPT = Concept()


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    comparator: str | None = None
    unit: str | None = None
    code: str | None = None
    system: str | None = None

    @property
    def unit_code(self) -> str:
        """The UCUM code when the Quantity gives one, else its human unit."""
        if self.code and self.code.strip() and self.system in (None, "http://unitsofmeasure.org"):
            return self.code
        return self.unit or self.code or ""


@dataclass(frozen=True, slots=True)
class AgeBound:
    value: float
    unit: str | None  # a UCUM age unit, or None when it is not one


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    low: Quantity | None = None
    high: Quantity | None = None
    type: Concept | None = None
    age_low: AgeBound | None = None
    age_high: AgeBound | None = None
    has_age: bool = False


@dataclass(frozen=True, slots=True)
class ObservationPart:
    """The Observation itself or one of its components: a code and its value."""

    code: Concept
    value_quantity: Quantity | None = None
    value_concept: Concept | None = None
    value_string: str | None = None
    data_absent: Concept | None = None
    interpretation: tuple[Concept, ...] = ()
    reference_range: tuple[ReferenceRange, ...] = ()
    location: str = ""


@dataclass(frozen=True, slots=True)
class Onset:
    """When a piece of evidence began, as far as the record says."""

    date: dt.date | None
    source: str


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """Who is screened: the reference the result names, birth date and sex at birth."""

    reference: str
    birth_date: dt.date | None
    sex: Sex
    sex_source: str


@dataclass(frozen=True, slots=True)
class ConditionFact:
    reference: str
    codings: tuple[Coding, ...]
    text: str | None
    verification_status: str | None
    clinical_status: str | None
    onset: Onset
    abatement: dt.date | None
    resolved_without_date: bool

    @property
    def counts(self) -> bool:
        """Refuted and entered-in-error Conditions never count; history does."""
        return self.verification_status not in _EXCLUDED_CONDITION_STATUS


@dataclass(frozen=True, slots=True)
class ObservationFact:
    """An Observation the rules read: status, when, and each part with its value."""

    reference: str
    status: str | None
    effective: Onset
    parts: tuple[ObservationPart, ...]
    interpretation: tuple[Concept, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderFact:
    reference: str
    status: str
    code: Concept
    authored: dt.date | None


@dataclass(frozen=True, slots=True)
class NotRead:
    """Something in the record that could have changed the result but was not used.

    ``location`` is a FHIRPath-like place in the request (``Bundle.entry[17].resource.code``);
    ``reference`` the resource it belongs to when that is known.
    """

    location: str
    reason: str
    reference: str | None = None

    def describe(self) -> str:
        where = f"{self.reference} ({self.location})" if self.reference else self.location
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class PatientRecord:
    """One patient's facts, and what could not be read for them."""

    patient: PatientFacts
    conditions: list[ConditionFact] = field(default_factory=list)
    observations: list[ObservationFact] = field(default_factory=list)
    orders: list[OrderFact] = field(default_factory=list)
    not_read: list[NotRead] = field(default_factory=list)
