"""Properties of the screening core over generated records (hypothesis).

Bundles are built from a Patient, Conditions whose codes are drawn from the rule
set's own ValueSets (plus codes no rule reads), and lab Observations drawn from the
lab rules (values around each threshold, coded results, interpretation flags), with
random dates, statuses and onset forms. The properties a clinician relies on:

- no bundle makes the core raise anything but a ScreeningError;
- one more Condition that is not an exclusion or an explaining cause never lowers
  the tier (version 1 broke this: a coded diabetes could use up an antibody);
- one more Observation never lowers the tier (version 1: a routine glucose beside a
  coded neonatal diabetes turned the antibody into "diabetes from labs");
- an explaining cause lowers the tier only by explaining a diarrhea code away;
- with no evidence left, the tier is low;
- the order of the entries does not change the result.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.config import default_profiles_dir
from service.profiles import load_profiles
from service.screening import ScreeningError, ScreeningResult, screen_bundle
from service.screening.ruleset import TIERS

AS_OF = dt.date(2028, 11, 23)
# Bounded and repeatable in the suite; PROPERTY_EXAMPLES=2000 for a deeper, random hunt.
_DEEP = os.environ.get("PROPERTY_EXAMPLES")
EXAMPLES = settings(max_examples=int(_DEEP or 60), deadline=None, derandomize=not _DEEP,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UNREAD_CODES = [("http://snomed.info/sct", "38341003"), ("http://hl7.org/fhir/sid/icd-10-cm",
                                                          "J06.9"), ("urn:example", "x")]


# A strategy needs the rules when it is defined: load them once for the module.
RULES = load_profiles(default_profiles_dir()).rules
ALL_CODES = sorted({pair for matcher in RULES.value_sets.values()
                    for pair in matcher.listed_codes()}) + UNREAD_CODES
EVIDENCE_CODES = [pair for pair in ALL_CODES if RULES.classify(*pair) is not None]
# Mostly evidence (else nearly every record is low and the properties say little),
# with exclusions, IPEX diagnoses and codes no rule reads mixed in.
CRITERION_CODES = [pair for pair in EVIDENCE_CODES
                   if (hit := RULES.classify(*pair)) and hit.category.kind == "criterion"]
CODES = st.one_of(st.sampled_from(CRITERION_CODES), st.sampled_from(CRITERION_CODES),
                  st.sampled_from(EVIDENCE_CODES), st.sampled_from(ALL_CODES))
# The codes whose addition the rules allow to lower a tier: exclusions and causes.
LOWERING = {pair for pair in ALL_CODES
            if RULES.exclusion(*pair) is not None or RULES.causes(*pair)}
NOT_LOWERING_CODES = st.sampled_from([pair for pair in ALL_CODES if pair not in LOWERING])
CAUSE_CODES = [pair for pair in ALL_CODES if RULES.causes(*pair)]
assert RULES.lab_rules is not None
LABS = RULES.lab_rules.labs
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CODED_RESULTS = [("http://snomed.info/sct", "10828004", "Positive"),
                 ("http://snomed.info/sct", "260385009", "Negative")]


def _dates(low: dt.date, high: dt.date) -> st.SearchStrategy[dt.date]:
    return st.dates(min_value=low, max_value=high)


@st.composite
def _patient(draw: st.DrawFn) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "p1"}
    gender = draw(st.sampled_from(["male", "female", "other", "unknown", None]))
    if gender:
        patient["gender"] = gender
    patient["birthDate"] = draw(_dates(dt.date(2008, 1, 1), AS_OF)).isoformat()
    return patient


@st.composite
def _condition(
    draw: st.DrawFn, birth: dt.date, index: int,
    codes: st.SearchStrategy[tuple[str, str]] = CODES,
) -> dict[str, Any]:
    system, code = draw(codes)
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"c{index}",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    onset = draw(st.sampled_from(["date", "age", "period", "none"]))
    # Early onsets are what the tier table reads; some fall after the screening date.
    start = birth + dt.timedelta(days=draw(st.integers(0, 5 * 365)))
    if onset == "date":
        condition["onsetDateTime"] = start.isoformat()
    elif onset == "age":
        condition["onsetAge"] = {"value": draw(st.integers(0, 60)), "unit": "mo",
                                 "system": "http://unitsofmeasure.org", "code": "mo"}
    elif onset == "period":
        condition["onsetPeriod"] = {"start": start.isoformat()}
    if draw(st.booleans()):
        condition["abatementDateTime"] = draw(_dates(start, max(start, AS_OF))).isoformat()
    verification = draw(st.sampled_from([None, None, "confirmed", "confirmed", "provisional",
                                         "refuted", "entered-in-error"]))
    if verification:
        condition["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": verification}]}
    clinical = draw(st.sampled_from([None, "active", "resolved", "inactive"]))
    if clinical and verification != "entered-in-error":
        condition["clinicalStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": clinical}]}
    return condition


@st.composite
def _observation(draw: st.DrawFn, birth: dt.date, index: int) -> dict[str, Any]:
    """A lab result the rules read: a value near a threshold, a coded result or a flag."""
    lab = draw(st.sampled_from(LABS))
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{index}",
        "status": draw(st.sampled_from(["final", "final", "final", "amended", "cancelled"])),
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org",
                             "code": draw(st.sampled_from(sorted(lab.codes)))}]},
        "effectiveDateTime": (birth + dt.timedelta(days=draw(st.integers(0, 5 * 365)))
                              ).isoformat(),
    }
    thresholds = [
        (scale.unit, threshold)
        for scale in lab.scales
        for threshold in (scale.threshold, *(band.threshold for band in scale.by_age))
        if threshold is not None
    ]
    form = draw(st.sampled_from(["quantity", "quantity", "coded", "flag"]))
    if form == "quantity" and thresholds:
        unit, threshold = draw(st.sampled_from(thresholds))
        assert threshold is not None
        factor = draw(st.sampled_from([0.5, 0.99, 1.0, 1.01, 2.0]))
        observation["valueQuantity"] = {"value": round(threshold.value * factor, 4),
                                        "unit": unit, "system": UCUM, "code": unit}
    elif form == "coded" or not thresholds:
        system, code, display = draw(st.sampled_from(CODED_RESULTS))
        observation["valueCodeableConcept"] = {"coding": [
            {"system": system, "code": code, "display": display}]}
    else:
        observation["valueQuantity"] = {"value": draw(st.integers(0, 500))}
        observation["interpretation"] = [{"coding": [{
            "system": INTERPRETATION, "code": draw(st.sampled_from(["H", "N", "L", "POS"]))}]}]
    return observation


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{i:08d}-0000-4000-8000-000000000000",
                       "resource": r} for i, r in enumerate(resources)]}


Record = tuple[dict[str, Any], list[dict[str, Any]]]


@st.composite
def records(draw: st.DrawFn, *, max_conditions: int = 8, max_observations: int = 4) -> Record:
    patient = draw(_patient())
    birth = dt.date.fromisoformat(patient["birthDate"])
    count = draw(st.integers(0, max_conditions))
    labs = draw(st.integers(0, max_observations))
    return patient, ([draw(_condition(birth, i)) for i in range(count)]
                     + [draw(_observation(birth, i)) for i in range(labs)])


def _screen(resources: list[dict[str, Any]]) -> ScreeningResult:
    [result] = screen_bundle(_bundle(resources), RULES, as_of=AS_OF)
    return result


def _rank(tier: str) -> int:
    return TIERS.index(tier)  # type: ignore[arg-type]


def _summary(result: ScreeningResult) -> tuple[Any, ...]:
    return (result.tier, result.decision.row.row, sorted(result.findings.criteria),
            sorted(result.findings.supporting), result.suppressed,
            result.recommendation.key if result.recommendation else None)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
FIELDS = ["code", "subject", "onsetDateTime", "onsetAge", "onsetPeriod", "onsetString",
          "verificationStatus", "clinicalStatus", "abatementDateTime", "recordedDate",
          "birthDate", "gender", "extension", "id", "resourceType"]


@EXAMPLES
@given(record=records(), garbage=st.lists(st.tuples(st.integers(0, 8),
                                                         st.sampled_from(FIELDS), JSON_VALUES),
                                               max_size=3))
def test_no_bundle_raises_anything_but_a_screening_error(
    record: tuple[dict[str, Any], list[dict[str, Any]]],
    garbage: list[tuple[int, str, Any]],
) -> None:
    patient, conditions = record
    resources = [patient, *conditions]
    for index, name, value in garbage:
        resources[index % len(resources)][name] = value
    try:
        results = screen_bundle(_bundle(resources), RULES, as_of=AS_OF)
    except ScreeningError:
        return
    assert all(r.tier in TIERS for r in results)


# Version 1's defect, pinned: coded neonatal diabetes at 3 weeks and a GAD65 antibody
# (row 3: diabetes before 6 months + a feature); a routine glucose must not turn the
# antibody into "diabetes from labs" and leave row 5.
_V1_PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male",
               "birthDate": "2026-01-10"}
_V1_RESOURCES = [
    {"resourceType": "Condition", "id": "c0", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "P70.2"}]},
     "onsetDateTime": "2026-01-31"},
    {"resourceType": "Observation", "id": "o0", "status": "final",
     "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "94345-6"}]},
     "effectiveDateTime": "2026-02-02",
     "valueQuantity": {"value": 0.5, "unit": "nmol/L", "system": UCUM, "code": "nmol/L"}},
]
_V1_GLUCOSE = {"resourceType": "Observation", "id": "o1", "status": "final",
               "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
               "effectiveDateTime": "2026-02-02",
               "valueQuantity": {"value": 250, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}


# A coded diagnosis dated after the labs that showed it: the rules' default reading (the
# antibody as a feature beside a coded diabetes) alone would move the diabetes from
# 2.5 months to 28 months and drop the boy from row 2 to row 4.
_LATE_CODE_RESOURCES = [
    {"resourceType": "Condition", "id": "c0", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "K52.9"}]},
     "onsetDateTime": "2026-02-01"},
    {**_V1_GLUCOSE, "effectiveDateTime": "2026-03-25"},
    {**_V1_RESOURCES[1], "effectiveDateTime": "2026-03-25"},
]
_LATE_T1D = {"resourceType": "Condition", "id": "c9", "subject": {"reference": "Patient/p1"},
             "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E10.9"}]},
             "onsetDateTime": "2028-05-20"}


@EXAMPLES
@given(record=records(), extra=st.data())
@example(record=(_V1_PATIENT, _LATE_CODE_RESOURCES), extra=None).via("a later-dated code")
def test_one_more_condition_never_lowers_the_tier(
    record: tuple[dict[str, Any], list[dict[str, Any]]], extra: st.DataObject | None
) -> None:
    patient, resources = record
    birth = dt.date.fromisoformat(patient["birthDate"])
    added = (_LATE_T1D if extra is None
             else extra.draw(_condition(birth, len(resources), NOT_LOWERING_CODES)))
    before = _screen([patient, *resources])
    after = _screen([patient, *resources, added])
    assert _rank(after.tier) >= _rank(before.tier), (before.tier, after.tier, added)
    if extra is None:
        assert (before.decision.row.row, after.decision.row.row) == (2, 2)


@EXAMPLES
@given(record=records(), extra=st.data())
@example(record=(_V1_PATIENT, _V1_RESOURCES), extra=None).via("version 1's defect")
def test_one_more_observation_never_lowers_the_tier(
    record: tuple[dict[str, Any], list[dict[str, Any]]], extra: st.DataObject | None
) -> None:
    patient, resources = record
    birth = dt.date.fromisoformat(patient["birthDate"])
    added = _V1_GLUCOSE if extra is None else extra.draw(_observation(birth, len(resources)))
    before = _screen([patient, *resources])
    after = _screen([patient, *resources, added])
    assert _rank(after.tier) >= _rank(before.tier), (before.tier, after.tier, added)
    if extra is None:
        assert (before.decision.row.row, after.decision.row.row) == (3, 3)


@EXAMPLES
@given(record=records(), extra=st.data())
def test_an_explaining_cause_lowers_the_tier_only_by_explaining_diarrhea(
    record: tuple[dict[str, Any], list[dict[str, Any]]], extra: st.DataObject
) -> None:
    patient, resources = record
    birth = dt.date.fromisoformat(patient["birthDate"])
    added = extra.draw(_condition(birth, len(resources), st.sampled_from(CAUSE_CODES)))
    before = _screen([patient, *resources])
    after = _screen([patient, *resources, added])
    if _rank(after.tier) < _rank(before.tier):
        assert after.findings.explained, (before.tier, after.tier, added)
        assert all(e.explanation.reference == "Condition/" + added["id"]
                   for e in after.findings.explained
                   if e not in before.findings.explained)


@EXAMPLES
@given(record=records())
def test_no_evidence_left_gives_low(record: tuple[dict[str, Any], list[dict[str, Any]]]
                                    ) -> None:
    patient, resources = record
    assert _screen([patient]).tier == "low"
    unread = [c for c in resources
              if c["resourceType"] == "Condition"
              and not any(RULES.classify(cd["system"], cd["code"])
                          for cd in c["code"]["coding"])]
    result = _screen([patient, *unread])
    assert result.tier == "low" and not result.findings.criteria


@EXAMPLES
@given(record=records(), order=st.randoms(use_true_random=False))
def test_entry_order_does_not_change_the_result(
    record: tuple[dict[str, Any], list[dict[str, Any]]], order: Any
) -> None:
    patient, conditions = record
    resources = [patient, *conditions]
    shuffled = list(resources)
    order.shuffle(shuffled)
    first, second = _screen(resources), _screen(shuffled)
    assert _summary(first) == _summary(second)
    assert sorted(first.basis) == sorted(second.basis)
