"""`passes_over`: the resources a reader may drop before screening without changing it.

Population screening drops them from a Bulk Data export before grouping by patient
(nearly every Synthea Observation is a vital sign or a routine lab). The promise is
exact: replacing each passed-over resource by an inert one leaves the whole screening
result equal, not-read notes and their locations included. Checked on every scenario,
published case and Synthea record, and on generated records with malformed fields.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.profiles import Profiles
from service.screening import (
    PASSES_OVER_READS,
    RuleSet,
    ScreeningResult,
    passes_over,
    screen_bundle,
)
from service.screening.fhir_fields import Problems as FieldProblems
from service.screening.record import _Entry, _is_read

from .conftest import load_json, scenario_files, synthea_files
from .published import load_cases
from .test_properties import AS_OF, EXAMPLES, RULES, UNREAD_CODES, Record, _bundle, records

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def _cut_down(resource: dict[str, Any]) -> dict[str, Any]:
    """What a reader that decodes only PASSES_OVER_READS hands passes_over."""
    return {k: v for k, v in resource.items() if k in PASSES_OVER_READS}


def _inert(bundle: dict[str, Any], rules: RuleSet) -> tuple[dict[str, Any], int]:
    """The Bundle with each passed-over resource swapped for an empty Basic, and how many."""
    out = copy.deepcopy(bundle)
    dropped = 0
    for entry in out.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        passed = passes_over(resource, rules)
        assert passes_over(_cut_down(resource), rules) is passed, "it reads only its fields"
        if passed:
            entry["resource"] = {"resourceType": "Basic", "id": resource.get("id", "x")}
            dropped += 1
    return out, dropped


def _same_without_passed_over(bundle: dict[str, Any], as_of: dt.date,
                              profiles: Profiles) -> int:
    inert, dropped = _inert(bundle, profiles.rules)
    before: list[ScreeningResult] = screen_bundle(bundle, profiles.rules, as_of=as_of)
    after = screen_bundle(inert, profiles.rules, as_of=as_of)
    assert after == before
    return dropped


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_scenarios_screen_the_same_without_what_is_passed_over(
    path: Path, profiles: Profiles
) -> None:
    doc = load_json(path)
    _same_without_passed_over(doc["bundle"], dt.date.fromisoformat(doc["asOf"]), profiles)


def test_published_cases_screen_the_same_without_what_is_passed_over(
    profiles: Profiles,
) -> None:
    for case in load_cases():
        _same_without_passed_over(dict(case.doc["bundle"]), case.as_of, profiles)


def test_synthea_records_the_same_and_nearly_every_observation_passed_over(
    profiles: Profiles,
) -> None:
    observations = passed = 0
    for path in synthea_files():
        bundle = load_json(path)
        passed += _same_without_passed_over(bundle, dt.date(2026, 11, 30), profiles)
        observations += sum(1 for e in bundle["entry"]
                            if e["resource"]["resourceType"] in ("Observation", "Condition"))
    # What makes dropping worth it: vital signs and routine labs are almost all of it.
    assert passed > 0.9 * observations


@given(records(max_conditions=4, max_observations=4))
@EXAMPLES
def test_generated_records_screen_the_same(record: Record) -> None:
    patient, resources = record
    extra = [{"resourceType": "Condition", "id": f"u{i}", "subject": {"reference": "Patient/p1"},
              "code": {"coding": [{"system": system, "code": code}]}}
             for i, (system, code) in enumerate(UNREAD_CODES)]
    bundle = _bundle([patient, *resources, *extra])
    inert, _ = _inert(bundle, RULES)
    assert screen_bundle(inert, RULES, as_of=AS_OF) == screen_bundle(bundle, RULES, as_of=AS_OF)


def _condition(code: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": code}


def _observation(code: Any, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
            "code": code, **more}


HEART_RATE = {"coding": [{"system": LOINC, "code": "8867-4"}]}
T1D = {"coding": [{"system": SNOMED, "code": "46635009"}]}


@pytest.mark.parametrize("resource", [
    _condition({"coding": [{"system": SNOMED, "code": "38341003"}]}),  # hypertension
    _observation(HEART_RATE),
    _observation({"coding": [{"system": LOINC, "code": "8867-4"},
                             {"system": "urn:example", "code": "hr"}]}),
    # Screening reads components only of Observations it reads, or those coded for it.
    _observation(HEART_RATE, component=[{"code": {"text": "free text"}}]),
    _observation(HEART_RATE, component="not a list"),
], ids=["unrelated-condition", "vital-sign", "two-unread-codings", "text-only-component",
        "bad-components"])
def test_passes_over_codes_the_rules_never_read(resource: dict[str, Any]) -> None:
    assert passes_over(resource, RULES)


@pytest.mark.parametrize("resource", [
    _condition(T1D),
    _condition({"coding": [{"system": SNOMED, "code": "38341003"}, *T1D["coding"]]}),
    _condition("46635009"),                                # a code given as a string
    _condition({"text": "type 1 diabetes"}),               # text only: reported
    _condition({"coding": [{"code": "46635009"}]}),        # no system: reported
    _condition(None),
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "ServiceRequest", "code": {"text": "FOXP3 sequencing"}},
    {"resourceType": "Encounter"},
], ids=["read-code", "one-read-coding", "string-code", "text-only", "no-system", "no-code",
        "patient", "order", "other-type"])
def test_keeps_what_screening_reads_or_reports(resource: dict[str, Any]) -> None:
    assert not passes_over(resource, RULES)


def test_keeps_an_observation_whose_component_the_rules_read() -> None:
    assert RULES.lab_rules is not None
    code = sorted(RULES.lab_rules.labs[0].codes)[0]
    resource = _observation(HEART_RATE, component=[
        {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": {"value": 1}}])
    assert not passes_over(resource, RULES)


# passes_over decides the common shapes itself (it runs on every line of an export) and
# leaves the rest to the reader's own test: over codes, codings and components of every
# shape, read and not, well formed and not, the two must agree, and what it passes over
# must leave the screening unchanged.
_LAB_CODES = sorted(RULES.lab_rules.labs[0].codes) if RULES.lab_rules else []
_WELL_FORMED = st.fixed_dictionaries({
    "system": st.sampled_from([LOINC, LOINC, SNOMED, "urn:x"]),
    "code": st.sampled_from(["8867-4", "8867-4", "38341003", "46635009", *_LAB_CODES[:2]])})
_CODINGS = st.one_of(
    _WELL_FORMED, _WELL_FORMED, _WELL_FORMED,
    st.fixed_dictionaries({"system": st.sampled_from([LOINC, ""]),
                           "code": st.sampled_from(["8867-4", " ", "", 7])}),
    st.sampled_from([None, "8867-4", 3, [], {}]),
)
_CONCEPTS = st.one_of(
    st.builds(lambda codings, text: {"coding": codings, **text},
              st.lists(_CODINGS, max_size=3),
              st.sampled_from([{}, {"text": "x"}, {"text": 5}, {"text": None}])),
    st.sampled_from([None, "8867-4", {"text": "only text"}, {"coding": "not a list"},
                     {"coding": None}]),
)
_COMPONENTS = st.one_of(
    st.none(),
    st.lists(st.one_of(st.builds(lambda code: {"code": code}, _CONCEPTS),
                       st.sampled_from([None, "x", {}])), max_size=3),
    st.sampled_from(["not a list", {}]),
)


@st.composite
def _coded(draw: st.DrawFn) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": draw(st.sampled_from(["Observation", "Observation", "Condition"])),
        "id": "r1", "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2027-01-01", "onsetDateTime": "2027-01-01",
        "valueQuantity": {"value": 1, "unit": "mg/dL"}}
    code = draw(_CONCEPTS)
    if code is not None or draw(st.booleans()):  # absent, or null
        resource["code"] = code
    components = draw(_COMPONENTS)
    if components is not None or draw(st.booleans()):
        resource["component"] = components
    return resource


_LAB = {"system": LOINC, "code": _LAB_CODES[0]} if _LAB_CODES else {}


@given(_coded())
@settings(EXAMPLES, max_examples=max(EXAMPLES.max_examples, 300))
@example(_observation({**HEART_RATE, "text": 5}, component=[]))  # a bad text: reported
@example(_observation({**HEART_RATE, "text": 5}))  # ... unless no component (not looked at)
@example(_observation(HEART_RATE, component=[{"code": {"coding": [_LAB, {"code": 7}]}}]))
@example(_observation(HEART_RATE, component=[{"code": {"coding": [{"system": LOINC}, _LAB]}}]))
@example(_observation(HEART_RATE, component=[{"code": {"coding": "x"}}, {"code": 5}]))
@example(_condition({**T1D, "coding": [HEART_RATE["coding"][0]]} | {"text": 5}))
@example({**_condition({"coding": [{"system": SNOMED, "code": "38341003"}]}),
          "component": [{"code": {"coding": [_LAB]}}]})
@example({**_condition({"coding": [{"system": SNOMED, "code": "38341003"}], "text": 5}),
          "component": []})
def test_passes_over_agrees_with_the_reader_on_every_shape(resource: dict[str, Any]) -> None:
    read, _ = _is_read(_Entry(0, resource, resource["resourceType"], "", None), RULES, None,
                       FieldProblems())
    assert passes_over(resource, RULES) is not read
    assert passes_over(_cut_down(resource), RULES) is not read
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male",
               "birthDate": "2026-06-01"}
    bundle = _bundle([patient, resource])
    inert, dropped = _inert(bundle, RULES)
    assert screen_bundle(inert, RULES, as_of=AS_OF) == screen_bundle(bundle, RULES, as_of=AS_OF)
    assert dropped == (not read)
