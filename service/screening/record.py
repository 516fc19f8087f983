"""Read a FHIR Bundle into facts about each patient: the first step of screening.

One pass over the entries. Every Patient is read; every Condition, Observation and
ServiceRequest whose codes the rules use is read into typed facts (the field readers
are in :mod:`.fhir_fields`); everything else (Encounters, Claims) is passed over.
Anything that is present, could have changed the result and cannot be used (an
entry with no ``resourceType``, a code given as a plain string, a Condition that
points at a patient not in the Bundle, an onset before birth) becomes a
:class:`NotRead` with its location, on the record of the patient it belongs to, or
on every patient's record when it cannot be placed. Only a request that is not a
Bundle at all is refused (:class:`NotABundle`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import fhir_fields as fields
from .errors import NotABundle, NothingToScreen
from .facts import (
    Concept,
    ConditionFact,
    NotRead,
    ObservationFact,
    ObservationPart,
    OrderFact,
    PatientFacts,
    PatientRecord,
    Sex,
)
from .fhir_fields import Problems
from .resource_types import RESOURCE_TYPES
from .ruleset import RuleSet

ACCEPTED_BUNDLE_TYPES = frozenset({"collection", "searchset", "transaction", "batch", "document"})
BIRTH_SEX_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
SEX_FOR_CLINICAL_USE_URLS = frozenset(
    {
        "http://hl7.org/fhir/StructureDefinition/patient-sexParameterForClinicalUse",
        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Patient.sexParameterForClinicalUse",
    }
)
_GENDERS: dict[str, Sex] = {"male": "male", "female": "female", "other": "unknown",
                            "unknown": "unknown"}
_BIRTH_SEX: dict[str, Sex] = {"M": "male", "F": "female", "UNK": "unknown",
                              "ASKU": "unknown", "OTH": "unknown"}
_CLINICAL_SEX: dict[str, Sex] = {"male-typical": "male", "female-typical": "female",
                                 "specified-elsewhere": "unknown", "unknown": "unknown"}
_READ_KINDS = frozenset({"Condition", "Observation", "ServiceRequest"})


def unwrap_bundle(body: Any) -> Mapping[str, Any]:
    """Return the Bundle a request carries: the body itself, or Parameters.bundle."""
    if not isinstance(body, dict):
        raise NotABundle("the body must be a FHIR Bundle or Parameters resource (a JSON object)")
    kind = body.get("resourceType")
    if kind == "Parameters":
        parameters = body.get("parameter")
        for parameter in parameters if isinstance(parameters, list) else []:
            if isinstance(parameter, dict) and parameter.get("name") == "bundle":
                inner = parameter.get("resource")
                if isinstance(inner, dict) and inner.get("resourceType") == "Bundle":
                    return _check_bundle(inner)
                raise NotABundle("Parameters 'bundle' must hold a Bundle resource",
                                 expression="Parameters.parameter.where(name='bundle')")
        raise NotABundle("Parameters has no parameter named 'bundle'")
    if kind != "Bundle":
        shown = f"a {kind}" if isinstance(kind, str) else "a JSON object with no resourceType"
        raise NotABundle(f"expected a Bundle or Parameters resource, got {shown}")
    return _check_bundle(body)


def _check_bundle(bundle: Mapping[str, Any]) -> Mapping[str, Any]:
    bundle_type = bundle.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in ACCEPTED_BUNDLE_TYPES:
        raise NotABundle(
            f"Bundle.type must be one of {', '.join(sorted(ACCEPTED_BUNDLE_TYPES))}; "
            f"got {bundle_type!r}",
            expression="Bundle.type",
        )
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise NotABundle("Bundle.entry must be an array", expression="Bundle.entry")
    return bundle


class _References:
    """Resolve references between entries: relative ids, urn:uuid and absolute URLs."""

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}

    def add(self, key: str, full_url: str | None, resource_type: str, rid: str | None) -> None:
        if full_url:
            self._by_key[full_url] = key
        if rid:
            self._by_key[f"{resource_type}/{rid}"] = key

    def resolve(self, ref: str) -> str | None:
        if ref in self._by_key:
            return self._by_key[ref]
        parts = ref.rstrip("/").split("/")
        if len(parts) >= 2:
            # An absolute URL (https://ehr/fhir/Patient/1) or a versioned one
            # (Patient/1/_history/2) still names Patient/1.
            if len(parts) >= 4 and parts[-2] == "_history":
                parts = parts[:-2]
            return self._by_key.get(f"{parts[-2]}/{parts[-1]}")
        return None


def entry_reference(entry: Mapping[str, Any], resource: Mapping[str, Any], index: int) -> str:
    """The reference a result uses for an entry: Type/id, else its fullUrl."""
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return f"{resource['resourceType']}/{rid}"
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str) and full_url:
        return full_url
    return f"{resource['resourceType']}/#entry{index}"


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    resource: Mapping[str, Any]
    kind: str
    key: str
    full_url: str | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}].resource"


def _sex(patient: Mapping[str, Any], where: str, problems: Problems) -> tuple[Sex, str]:
    """Sex assigned at birth: US Core birth sex, then sex for clinical use, then gender."""
    extensions = patient.get("extension")
    listed = extensions if isinstance(extensions, list) else []
    for i, ext in enumerate(listed):
        if isinstance(ext, dict) and ext.get("url") == BIRTH_SEX_URL:
            code = ext.get("valueCode")
            if code not in _BIRTH_SEX:
                problems.add(f"{where}.extension[{i}].valueCode",
                             f"birth sex {fields.shown(code)} is not M, F or UNK: sex taken "
                             "as unknown")
            return _BIRTH_SEX.get(code, "unknown") if isinstance(code, str) else "unknown", \
                "us-core-birthsex"
    for i, ext in enumerate(listed):
        if isinstance(ext, dict) and ext.get("url") in SEX_FOR_CLINICAL_USE_URLS:
            for j, part in enumerate(ext.get("extension") or []):
                if isinstance(part, dict) and part.get("url") == "value":
                    code = fields.status_code(
                        part.get("valueCodeableConcept"),
                        f"{where}.extension[{i}].extension[{j}].valueCodeableConcept", problems)
                    return _CLINICAL_SEX.get(code or "", "unknown"), \
                        "sex-parameter-for-clinical-use"
    gender = patient.get("gender")
    if gender is None:
        return "unknown", "absent"
    if not isinstance(gender, str) or gender not in _GENDERS:
        problems.add(f"{where}.gender", f"{fields.shown(gender)} is not a FHIR gender "
                                        "(male, female, other, unknown): sex taken as unknown")
        return "unknown", "gender"
    return _GENDERS[gender], "gender"


def _read_patient(entry: _Entry, as_of: dt.date, problems: Problems) -> PatientFacts:
    resource, where = entry.resource, entry.where
    if not isinstance(resource.get("id"), str) or not resource.get("id"):
        problems.add(f"{where}.id", "the Patient has no id, so resources that refer to it as "
                                    "Patient/<id> cannot be linked to it")
    birth = fields.date(resource.get("birthDate"), f"{where}.birthDate", problems)
    if birth is not None and birth > as_of:
        problems.add(f"{where}.birthDate", f"birth date {birth.isoformat()} is after the "
                                           f"screening date {as_of.isoformat()}: no age can be "
                                           "computed")
        birth = None
    sex, source = _sex(resource, where, problems)
    return PatientFacts(entry.key, birth, sex, source)


def _code_is_read(kind: str, code: Concept | None, rules: RuleSet,
                  order_code: tuple[str, str] | None) -> bool:
    if code is None:
        return False
    if kind == "Condition":
        return any(rules.reads_condition_code(c.system, c.code) for c in code.codings)
    if kind == "Observation":
        return any(rules.reads_observation_code(c.system, c.code) for c in code.codings)
    if rules.names_ordered_test(code.texts()):
        return True
    return order_code is not None and any((c.system, c.code) == order_code
                                          for c in code.codings)


def _observation_parts(
    entry: _Entry, code: Concept | None, rules: RuleSet, problems: Problems
) -> tuple[ObservationPart, ...]:
    """The one walker of components: the Observation and each component the rules read."""
    resource, where = entry.resource, entry.where
    parts = []
    if _code_is_read("Observation", code, rules, None):
        assert code is not None
        parts.append(fields.observation_part(resource, code, where, problems))
    components = resource.get("component")
    if components is not None and not isinstance(components, list):
        problems.add(f"{where}.component", "is not a list of components")
        return tuple(parts)
    text_only, shown = 0, []
    for i, component in enumerate(components or ()):
        raw = component.get("code") if type(component) is dict else None
        if type(raw) is dict and "coding" not in raw:
            # A text-only code: nothing the rules can match; said once per Observation.
            text_only += 1
            if text_only <= 3:
                shown.append(repr(str(raw.get("text"))[:40]))
            continue
        at = f"{where}.component[{i}]"
        if type(component) is not dict:
            problems.add(at, "is not a component")
            continue
        part_code = fields.concept(raw, f"{at}.code", problems)
        if _code_is_read("Observation", part_code, rules, None):
            assert part_code is not None
            parts.append(fields.observation_part(component, part_code, at, problems))
    if text_only:
        problems.add(f"{where}.component", f"{text_only} component"
                     f"{'s have' if text_only > 1 else ' has'} only a text code "
                     f"({', '.join(shown)}{', ...' if text_only > 3 else ''}): not read")
    return tuple(parts)


def _plainly_not_read(entry: _Entry, raw: Any, rules: RuleSet) -> bool:
    """True for a resource whose codings are all well formed and none the rules read, and
    with no component (most of a whole-record Bundle: vital signs, routine labs)."""
    if entry.resource.get("component") is not None:
        return False
    reads = rules.reads_condition_code if entry.kind == "Condition" \
        else rules.reads_observation_code
    return _codings_plainly_unread(raw, reads)


def _codings_plainly_unread(raw: Any, reads: Callable[[str, str], bool]) -> bool:
    """A CodeableConcept with codings, every one well formed (a system, a non-blank code)
    and none of them one that ``reads``."""
    if type(raw) is not dict:
        return False
    codings = raw.get("coding")
    if type(codings) is not list or not codings:
        return False
    for coding in codings:
        if type(coding) is not dict:
            return False
        system, code = coding.get("system"), coding.get("code")
        if type(system) is not str or type(code) is not str or not system or not code.strip():
            return False
        if reads(system, code):
            return False
    return True


def _is_read(entry: _Entry, rules: RuleSet, order_code: tuple[str, str] | None,
             problems: Problems) -> tuple[bool, Concept | None]:
    """Whether the rules read this resource (its code, or a component's), and its code.

    A resource whose code cannot be read at all could be anything: it counts as read,
    so that the problem is reported rather than the entry passed over.
    """
    raw = entry.resource.get("code")
    if entry.kind != "ServiceRequest" and _plainly_not_read(entry, raw, rules):
        return False, None  # well-formed codes the rules never read: nothing to build
    code = fields.concept(raw, f"{entry.where}.code", problems)
    if _code_is_read(entry.kind, code, rules, order_code):
        return True, code
    if entry.kind == "Observation":
        components = entry.resource.get("component")
        if isinstance(components, list):
            for component in components:
                raw = component.get("code") if isinstance(component, dict) else None
                if type(raw) is not dict or not raw.get("coding"):
                    continue
                part = fields.concept(raw, "", Problems())
                if _code_is_read("Observation", part, rules, None):
                    return True, code
    if problems:
        return True, code  # unreadable codes: report them
    if code is None or not code.codings:
        problems.add(f"{entry.where}.code",
                     "has no coded value the rules can match"
                     + (f" (text only: {code.text!r})" if code is not None and code.text else ""))
        return True, code
    return False, code


def _before_birth(day: dt.date | None, birth: dt.date | None, where: str,
                  problems: Problems) -> dt.date | None:
    if day is not None and birth is not None and day < birth:
        problems.add(where, f"{day.isoformat()} is before the birth date "
                            f"{birth.isoformat()}: the date was not used")
        return None
    return day


def _read_condition(entry: _Entry, code: Concept | None, birth: dt.date | None,
                    problems: Problems) -> ConditionFact:
    resource, where = entry.resource, entry.where
    onset = fields.onset(resource, birth, where, problems)
    if _before_birth(onset.date, birth, f"{where}.onset ({onset.source})", problems) is None \
            and onset.date is not None:
        onset = type(onset)(None, "none")
    abated, without_date = fields.abatement(resource, birth, where, problems)
    abated = _before_birth(abated, birth, f"{where}.abatement", problems)
    concept = code or Concept()
    return ConditionFact(
        reference=entry.key,
        codings=concept.codings,
        text=concept.text,
        verification_status=fields.status_code(resource.get("verificationStatus"),
                                               f"{where}.verificationStatus", problems),
        clinical_status=fields.status_code(resource.get("clinicalStatus"),
                                           f"{where}.clinicalStatus", problems),
        onset=onset,
        abatement=abated,
        resolved_without_date=without_date,
    )


def _read_observation(entry: _Entry, code: Concept | None, rules: RuleSet,
                      birth: dt.date | None, problems: Problems) -> ObservationFact:
    resource, where = entry.resource, entry.where
    effective = fields.effective(resource, where, problems)
    if _before_birth(effective.date, birth, f"{where}.effective", problems) is None \
            and effective.date is not None:
        effective = type(effective)(None, "none")
    return ObservationFact(
        reference=entry.key,
        status=fields.string(resource.get("status"), f"{where}.status", problems),
        effective=effective,
        parts=_observation_parts(entry, code, rules, problems),
        interpretation=fields.concepts(resource.get("interpretation"),
                                       f"{where}.interpretation", problems),
    )


def _read_order(entry: _Entry, code: Concept | None, problems: Problems) -> OrderFact:
    resource, where = entry.resource, entry.where
    return OrderFact(
        reference=entry.key,
        status=fields.string(resource.get("status"), f"{where}.status", problems) or "unknown",
        code=code or Concept(),
        authored=fields.date(resource.get("authoredOn"), f"{where}.authoredOn", problems),
    )


def _not_read(problems: Problems, reference: str | None) -> list[NotRead]:
    return [NotRead(where, reason, reference) for where, reason in problems]


def _entries(entries: Sequence[Any], everyone: list[NotRead]) -> list[_Entry]:
    """The entries holding a resource; what holds none (or an unusable one) is reported."""
    found = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            everyone.append(NotRead(where, f"the entry is {fields.shown(entry)}, not an object: "
                                           "whatever it was meant to hold was not read"))
            continue
        resource = entry.get("resource")
        if resource is None:
            if "request" not in entry:  # a bare transaction request holds no data
                everyone.append(NotRead(where, "the entry has no resource"))
            continue
        if not isinstance(resource, dict):
            everyone.append(NotRead(f"{where}.resource",
                                    f"is {fields.shown(resource)}, not a FHIR resource"))
            continue
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or kind not in RESOURCE_TYPES:
            what = f"{fields.shown(kind)} is not a FHIR resource type" if isinstance(kind, str) \
                else "the resource has no resourceType"
            everyone.append(NotRead(f"{where}.resource.resourceType",
                                    f"{what}: the resource was not read"))
            continue
        if kind == "Bundle":
            everyone.append(NotRead(f"{where}.resource", "a Bundle inside the Bundle is not "
                                                         "read: send its entries directly"))
            continue
        full_url = entry.get("fullUrl")
        found.append(_Entry(index, resource, kind, entry_reference(entry, resource, index),
                            full_url if isinstance(full_url, str) else None))
    return found


def read_bundle(
    bundle: Mapping[str, Any],
    rules: RuleSet,
    *,
    as_of: dt.date,
    order_code: tuple[str, str] | None = None,
) -> list[PatientRecord]:
    """Read every patient of a Bundle into a :class:`PatientRecord`, in entry order."""
    everyone: list[NotRead] = []
    entries = _entries(bundle.get("entry") or [], everyone)
    refs = _References()
    patients: dict[str, PatientRecord] = {}
    for entry in entries:
        rid = entry.resource.get("id")
        refs.add(entry.key, entry.full_url, entry.kind, rid if isinstance(rid, str) else None)
        if entry.kind == "Patient":
            problems = Problems()
            facts = _read_patient(entry, as_of, problems)
            patients[entry.key] = PatientRecord(facts, not_read=_not_read(problems, entry.key))

    if not patients:
        unread = f" ({len(everyone)} entries could not be read: {everyone[0].describe()})" \
            if everyone else ""
        raise NothingToScreen(f"the Bundle holds no Patient resource to screen{unread}")
    only_patient = next(iter(patients.values())) if len(patients) == 1 else None

    for entry in entries:
        if entry.kind not in _READ_KINDS:
            continue
        problems = Problems()
        read, code = _is_read(entry, rules, order_code, problems)
        if not read:
            continue
        record = _owner(entry, refs, patients, only_patient, everyone)
        if record is None:
            continue
        birth = record.patient.birth_date
        if entry.kind == "Condition":
            record.conditions.append(_read_condition(entry, code, birth, problems))
        elif entry.kind == "Observation":
            record.observations.append(_read_observation(entry, code, rules, birth, problems))
        else:
            record.orders.append(_read_order(entry, code, problems))
        record.not_read.extend(_not_read(problems, entry.key))

    for record in patients.values():
        record.not_read.extend(everyone)
    return list(patients.values())


def _owner(
    entry: _Entry,
    refs: _References,
    patients: Mapping[str, PatientRecord],
    only_patient: PatientRecord | None,
    everyone: list[NotRead],
) -> PatientRecord | None:
    """The patient a clinical resource belongs to; what cannot be placed is reported."""
    where = f"{entry.where}.subject"
    subject = entry.resource.get("subject")
    if subject is None:
        if only_patient is not None:
            return only_patient  # a subject-less resource in a one-patient record
        everyone.append(NotRead(where, "has no subject, and the Bundle holds several "
                                       "patients: it was not read", entry.key))
        return None
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        shown = f"is {fields.shown(subject)}" if not isinstance(subject, dict) \
            else "has no reference"
        everyone.append(NotRead(where, f"{shown}, not a Reference to a Patient: it was not "
                                       "read", entry.key))
        return None
    owner = refs.resolve(ref)
    record = patients.get(owner) if owner else None
    if record is None:
        everyone.append(NotRead(where, f"points at {ref}, which is not a Patient in this "
                                       "Bundle: it was not read", entry.key))
    return record


PASSES_OVER_READS = frozenset({"resourceType", "code", "component"})
"""The only fields :func:`passes_over` looks at (one that is null as one that is absent):
a reader that decodes a line only partly may hand it the resource cut down to them."""


def passes_over(resource: Mapping[str, Any], rules: RuleSet) -> bool:
    """True when screening a Bundle that holds ``resource`` gives the same result as
    screening it without: a Condition or Observation whose codes are all well formed and
    none of them, nor any component's, is one the rules read.

    For readers that see resources before they are gathered into a patient's Bundle
    (population screening of a Bulk Data export, where nearly every Observation is a
    vital sign or routine lab): what this passes over need not be kept. Anything else,
    including a resource with an unreadable code (which screening reports), is kept.

    It is called on every line of an export, so the common shapes (no components, or
    components with well-formed codes) are decided here directly, exactly as
    :func:`_is_read` decides them; any other shape is left to :func:`_is_read` itself.
    """
    kind = resource.get("resourceType")
    if kind == "Observation":
        reads = rules.reads_observation_code
    elif kind == "Condition":
        reads = rules.reads_condition_code
    else:
        return False
    raw: Any = resource.get("code")
    if _codings_plainly_unread(raw, reads):
        components = resource.get("component")
        if components is None:
            return True
        text = raw.get("text")
        if kind == "Observation" and type(components) is list and (
                text is None or type(text) is str):
            for component in components:
                if _component_read(component, reads):
                    break
            else:
                return True
    read, _ = _is_read(_Entry(0, resource, kind, "", None), rules, None, Problems())
    return not read  # what screening cannot read it reports, so counts as read


def _component_read(component: Any, reads: Callable[[str, str], bool]) -> bool:
    """What :func:`_is_read` asks of a component, for a well-formed one; True (so
    :func:`_is_read` decides) when a coded component is not plainly well formed."""
    raw = component.get("code") if isinstance(component, dict) else None
    if type(raw) is not dict or not raw.get("coding"):
        return False  # no coding: never read (screening notes text-only ones if it reads)
    return not _codings_plainly_unread(raw, reads)


def entries_read(
    bundle: Mapping[str, Any], rules: RuleSet, *, order_code: tuple[str, str] | None = None
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(location, resource) of every Patient and every resource the rules read."""
    for entry in _entries(bundle.get("entry") or [], []):
        if entry.kind == "Patient" or (
            entry.kind in _READ_KINDS and _is_read(entry, rules, order_code, Problems())[0]
        ):
            yield entry.where, entry.resource
