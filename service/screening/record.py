"""Read a FHIR Bundle into facts about each patient: the first step of screening.

Only what the rules read is validated with ``fhir.resources`` (R4B, identical to R4
for these resources): each Patient, and the Conditions, Observations and
ServiceRequests whose codes the rules use. Everything else (Claims, Encounters,
unknown resource types) is passed over unread, so a whole-record bundle costs
little more than its JSON parse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .dates import InvalidDate, date_after, normalise_age_unit, parse_fhir_date
from .errors import InvalidEntry, NotABundle, NothingToScreen
from .ruleset import RuleSet, Sex

ACCEPTED_BUNDLE_TYPES = frozenset({"collection", "searchset", "transaction", "batch", "document"})
BIRTH_SEX_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
SEX_FOR_CLINICAL_USE_URLS = frozenset(
    {
        "http://hl7.org/fhir/StructureDefinition/patient-sexParameterForClinicalUse",
        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Patient.sexParameterForClinicalUse",
    }
)
_EXCLUDED_CONDITION_STATUS = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """Who is screened: the reference the result names, birth date and sex at birth."""

    reference: str
    birth_date: dt.date | None
    sex: Sex
    sex_source: str


@dataclass(frozen=True, slots=True)
class Onset:
    """When a piece of evidence began, as far as the record says."""

    date: dt.date | None
    source: str


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
    """An Observation the rules read, kept whole for the lab and genetics rules."""

    reference: str
    resource: Mapping[str, Any]
    effective: Onset


@dataclass(frozen=True, slots=True)
class OrderFact:
    reference: str
    status: str
    codings: tuple[Coding, ...]
    text: str | None
    authored: dt.date | None


@dataclass(frozen=True, slots=True)
class Unread:
    """An entry the record reader set aside, with why (for the debug view)."""

    reference: str
    reason: str


@dataclass(slots=True)
class PatientRecord:
    patient: PatientFacts
    conditions: list[ConditionFact] = field(default_factory=list)
    observations: list[ObservationFact] = field(default_factory=list)
    orders: list[OrderFact] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)


def _models() -> dict[str, Any]:
    # Imported lazily: the FHIR models take a moment to load and most callers
    # (rule loading, the CLI's usage errors) never need them.
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.servicerequest import ServiceRequest

    return {
        "Patient": Patient,
        "Condition": Condition,
        "Observation": Observation,
        "ServiceRequest": ServiceRequest,
    }


_MODEL_CACHE: dict[str, Any] = {}


def _validate(resource: Mapping[str, Any], where: str) -> None:
    if not _MODEL_CACHE:
        _MODEL_CACHE.update(_models())
    model = _MODEL_CACHE[resource["resourceType"]]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidEntry(
            f"{where} is not a valid FHIR R4 {resource['resourceType']}: {problems}",
            expression=where,
        ) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidEntry(
            f"{where} is not a valid FHIR R4 {resource['resourceType']}: {exc}", expression=where
        ) from None


def unwrap_bundle(body: Any) -> Mapping[str, Any]:
    """Return the Bundle a request carries: the body itself, or Parameters.bundle."""
    if not isinstance(body, Mapping):
        raise NotABundle("the body must be a FHIR Bundle or Parameters resource (a JSON object)")
    kind = body.get("resourceType")
    if kind == "Parameters":
        parameters = body.get("parameter")
        for parameter in parameters if isinstance(parameters, list) else []:
            if isinstance(parameter, Mapping) and parameter.get("name") == "bundle":
                inner = parameter.get("resource")
                if isinstance(inner, Mapping) and inner.get("resourceType") == "Bundle":
                    return _check_bundle(inner)
                raise NotABundle("Parameters 'bundle' must hold a Bundle resource")
        raise NotABundle("Parameters has no parameter named 'bundle'")
    if kind != "Bundle":
        shown = kind if isinstance(kind, str) else "no resourceType"
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


def _codings(concept: Any) -> tuple[tuple[Coding, ...], str | None]:
    if not isinstance(concept, Mapping):
        return (), None
    found = []
    for coding in concept.get("coding") or []:
        if not isinstance(coding, Mapping):
            continue
        system, code = coding.get("system"), coding.get("code")
        if isinstance(system, str) and isinstance(code, str) and code.strip():
            display = coding.get("display")
            found.append(Coding(system, code, display if isinstance(display, str) else None))
    text = concept.get("text")
    return tuple(found), text if isinstance(text, str) else None


def _status_code(concept: Any) -> str | None:
    codings, _ = _codings(concept)
    return codings[0].code if codings else None


def _date(value: Any, where: str) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_fhir_date(value)
    except InvalidDate as exc:
        raise InvalidEntry(f"{where}: {exc}", expression=where) from None


def _age_date(age: Any, birth: dt.date | None, where: str) -> dt.date | None:
    if not isinstance(age, Mapping) or birth is None:
        return None
    value = age.get("value")
    unit = normalise_age_unit(age.get("unit"), age.get("code"))
    if not isinstance(value, int | float) or unit is None or value < 0:
        return None
    try:
        return date_after(birth, float(value), unit)
    except (InvalidDate, OverflowError):
        raise InvalidEntry(
            f"{where}: age {value} {unit} is out of range", expression=where
        ) from None


def condition_onset(resource: Mapping[str, Any], birth: dt.date | None, where: str) -> Onset:
    """Onset in every FHIR form, in the order the rules give (section 2)."""
    if "onsetDateTime" in resource:
        return Onset(_date(resource["onsetDateTime"], f"{where}.onsetDateTime"), "onsetDateTime")
    if "onsetAge" in resource:
        on = _age_date(resource["onsetAge"], birth, f"{where}.onsetAge")
        if on is not None:
            return Onset(on, "onsetAge")
    period = resource.get("onsetPeriod")
    if isinstance(period, Mapping) and "start" in period:
        return Onset(_date(period["start"], f"{where}.onsetPeriod.start"), "onsetPeriod.start")
    onset_range = resource.get("onsetRange")
    if isinstance(onset_range, Mapping) and "low" in onset_range:
        on = _age_date(onset_range["low"], birth, f"{where}.onsetRange.low")
        if on is not None:
            return Onset(on, "onsetRange.low")
    if "recordedDate" in resource:
        return Onset(_date(resource["recordedDate"], f"{where}.recordedDate"), "recordedDate")
    return Onset(None, "none")


def _abatement(
    resource: Mapping[str, Any], birth: dt.date | None, where: str
) -> tuple[dt.date | None, bool]:
    """Return the abatement date (earliest day) and whether it resolved with no date."""
    if "abatementDateTime" in resource:
        return _date(resource["abatementDateTime"], f"{where}.abatementDateTime"), False
    if "abatementAge" in resource:
        on = _age_date(resource["abatementAge"], birth, f"{where}.abatementAge")
        return on, on is None
    period = resource.get("abatementPeriod")
    if isinstance(period, Mapping):
        start = period.get("start") or period.get("end")
        on = _date(start, f"{where}.abatementPeriod")
        return on, on is None
    abatement_range = resource.get("abatementRange")
    if isinstance(abatement_range, Mapping):
        on = _age_date(abatement_range.get("low"), birth, f"{where}.abatementRange.low")
        return on, on is None
    if resource.get("abatementBoolean") is True or "abatementString" in resource:
        return None, True
    return None, False


def observation_effective(resource: Mapping[str, Any], where: str) -> Onset:
    """When an Observation was taken: effective[x], else issued."""
    if "effectiveDateTime" in resource:
        return Onset(_date(resource["effectiveDateTime"], f"{where}.effectiveDateTime"),
                     "effectiveDateTime")
    period = resource.get("effectivePeriod")
    if isinstance(period, Mapping) and "start" in period:
        return Onset(_date(period["start"], f"{where}.effectivePeriod.start"),
                     "effectivePeriod.start")
    if "effectiveInstant" in resource:
        return Onset(_date(resource["effectiveInstant"], f"{where}.effectiveInstant"),
                     "effectiveInstant")
    if "issued" in resource:
        return Onset(_date(resource["issued"], f"{where}.issued"), "issued")
    return Onset(None, "none")


def _sex(patient: Mapping[str, Any]) -> tuple[Sex, str]:
    """Sex assigned at birth: US Core birth sex, then sex for clinical use, then gender."""
    extensions = [e for e in patient.get("extension") or [] if isinstance(e, Mapping)]
    for ext in extensions:
        if ext.get("url") == BIRTH_SEX_URL:
            code = ext.get("valueCode")
            mapped: dict[Any, Sex] = {"M": "male", "F": "female"}
            return mapped.get(code, "unknown"), "us-core-birthsex"
    for ext in extensions:
        if ext.get("url") in SEX_FOR_CLINICAL_USE_URLS:
            for part in ext.get("extension") or []:
                if isinstance(part, Mapping) and part.get("url") == "value":
                    code = _status_code(part.get("valueCodeableConcept"))
                    by_code: dict[Any, Sex] = {"male-typical": "male", "female-typical": "female"}
                    return by_code.get(code, "unknown"), "sex-parameter-for-clinical-use"
    gender = patient.get("gender")
    if gender in ("male", "female"):
        return gender, "gender"
    return "unknown", "gender" if gender else "absent"


class _References:
    """Resolve references between entries: relative ids, urn:uuid and absolute URLs."""

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}

    def add(self, key: str, full_url: str | None, resource_type: str, rid: str | None) -> None:
        if full_url:
            self._by_key[full_url] = key
        if rid:
            self._by_key[f"{resource_type}/{rid}"] = key

    def resolve(self, reference: Any) -> str | None:
        if not isinstance(reference, Mapping):
            return None
        ref = reference.get("reference")
        if not isinstance(ref, str):
            return None
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


def read_bundle(
    bundle: Mapping[str, Any],
    rules: RuleSet,
    *,
    order_code: tuple[str, str] | None = None,
) -> list[PatientRecord]:
    """Read every patient of a Bundle into a :class:`PatientRecord`, in entry order."""
    entries = bundle.get("entry") or []
    refs = _References()
    patients: dict[str, PatientRecord] = {}
    clinical: list[tuple[int, Mapping[str, Any], Mapping[str, Any], str]] = []

    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, Mapping):
            raise NotABundle(f"{where} must be an object", expression=where)
        resource = entry.get("resource")
        if not isinstance(resource, Mapping):
            continue  # a transaction entry may be a bare request; nothing to read
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        rid = resource.get("id") if isinstance(resource.get("id"), str) else None
        key = entry_reference(entry, resource, index)
        refs.add(key, full_url, kind, rid)
        if kind == "Patient":
            _validate(resource, f"{where}.resource")
            birth = _date(resource.get("birthDate"), f"{where}.resource.birthDate")
            sex, source = _sex(resource)
            patients[key] = PatientRecord(PatientFacts(key, birth, sex, source))
        elif kind in ("Condition", "Observation", "ServiceRequest"):
            clinical.append((index, entry, resource, key))

    if not patients:
        raise NothingToScreen("the Bundle holds no Patient resource to screen")
    only_patient = next(iter(patients.values())) if len(patients) == 1 else None

    for index, _entry, resource, key in clinical:
        where = f"Bundle.entry[{index}].resource"
        kind = resource["resourceType"]
        if not _is_read(kind, resource, rules, order_code):
            continue
        _validate(resource, where)
        subject = resource.get("subject")
        owner_key = refs.resolve(subject)
        record = patients.get(owner_key) if owner_key else None
        if record is None:
            if subject is None and only_patient is not None:
                record = only_patient  # a subject-less Observation in a one-patient record
            else:
                for other in patients.values():
                    other.unread.append(Unread(key, "its subject is not a Patient in this Bundle"))
                continue
        birth = record.patient.birth_date
        if kind == "Condition":
            codings, text = _codings(resource.get("code"))
            abatement, resolved_without_date = _abatement(resource, birth, where)
            record.conditions.append(
                ConditionFact(
                    reference=key,
                    codings=codings,
                    text=text,
                    verification_status=_status_code(resource.get("verificationStatus")),
                    clinical_status=_status_code(resource.get("clinicalStatus")),
                    onset=condition_onset(resource, birth, where),
                    abatement=abatement,
                    resolved_without_date=resolved_without_date,
                )
            )
        elif kind == "Observation":
            record.observations.append(
                ObservationFact(key, resource, observation_effective(resource, where))
            )
        else:
            codings, text = _codings(resource.get("code"))
            record.orders.append(
                OrderFact(
                    reference=key,
                    status=str(resource.get("status")),
                    codings=codings,
                    text=text,
                    authored=_date(resource.get("authoredOn"), f"{where}.authoredOn"),
                )
            )
    return list(patients.values())


def _raw_codings(concept: Any) -> Iterable[tuple[str, str]]:
    # Called before validation: any JSON may stand where a list of codings belongs.
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    if isinstance(codings, list):
        for coding in codings:
            if isinstance(coding, Mapping):
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    yield system, code


def order_names_workup(resource: Mapping[str, Any], rules: RuleSet) -> bool:
    """A ServiceRequest whose code text or a coding's display names FOXP3 or IPEX."""
    concept = resource.get("code")
    if not isinstance(concept, Mapping):
        return False
    codings = concept.get("coding")
    return rules.names_ordered_test(
        [concept.get("text")]
        + [c.get("display") for c in (codings if isinstance(codings, list) else [])
           if isinstance(c, Mapping)]
    )


def _is_read(
    kind: str, resource: Mapping[str, Any], rules: RuleSet, order_code: tuple[str, str] | None
) -> bool:
    """The code filter: only resources whose codes the rules use are validated and read."""
    if kind == "Condition":
        return any(
            rules.reads_condition_code(system, code)
            for system, code in _raw_codings(resource.get("code"))
        )
    if kind == "Observation":
        if any(rules.reads_observation_code(s, c) for s, c in _raw_codings(resource.get("code"))):
            return True
        components = resource.get("component")
        return isinstance(components, list) and any(
            rules.reads_observation_code(s, c)
            for part in components
            if isinstance(part, Mapping)
            for s, c in _raw_codings(part.get("code"))
        )
    if order_names_workup(resource, rules):
        return True
    return order_code is not None and any(
        (system, code) == order_code for system, code in _raw_codings(resource.get("code"))
    )
