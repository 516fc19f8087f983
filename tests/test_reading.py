"""Every record is read honestly: what could not be used is named, never dropped in silence.

The reproductions of issue 12, each with its documented answer: an entry that is not
usable is screened around and named (in the RiskAssessment's note, the card's detail
and ``--explain``), and refused with a 422 under ``Prefer: handling=strict``; only a
request that is not a Bundle at all is a 400.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.profiles import Profiles
from service.screening import screen_bundle
from service.screening.explain import explain_result

from .cds_support import SERVICE, cds_app, classic_call
from .conftest import SCENARIOS
from .fixed_clock import FixedClock
from .scenarios import load_scenario

OPERATION = "/fhir/$ipex-screen"
FHIR_JSON = "application/fhir+json"
CLASSIC = load_scenario(SCENARIOS / "classic-infant-boy-triad.json")


def _classic() -> dict[str, Any]:
    return copy.deepcopy(CLASSIC.bundle)


def _screen(profiles: Profiles, bundle: dict[str, Any]) -> Any:
    (result,) = screen_bundle(bundle, profiles.rules, as_of=CLASSIC.as_of)
    return result


def _post(client: FlaskClient, bundle: dict[str, Any], **headers: str) -> Any:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": bundle},
        {"name": "asOf", "valueDate": CLASSIC.as_of.isoformat()}]}
    return client.post(OPERATION, data=json.dumps(body), content_type=FHIR_JSON,
                       headers=headers)


def _notes(assessment: dict[str, Any]) -> str:
    return " ".join(n["text"] for n in assessment.get("note", []))


def test_a_triad_condition_without_resource_type_is_named_and_lowers_the_tier_openly(
    client: FlaskClient, profiles: Profiles
) -> None:
    """Done-when of issue 12: the boy's diabetes entry lacks resourceType."""
    bundle = _classic()
    del bundle["entry"][2]["resource"]["resourceType"]
    response = _post(client, bundle)
    assert response.status_code == 200
    assessment = response.get_json()
    assert assessment["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "moderate"
    note = _notes(assessment)
    assert "could have changed this result but was not read" in note, note
    assert "Bundle.entry[2].resource.resourceType" in note and "no resourceType" in note
    strict = _post(client, bundle, Prefer="handling=strict")
    assert strict.status_code == 422
    issues = strict.get_json()["issue"]
    assert any(i.get("expression") == ["Bundle.entry[2].resource.resourceType"]
               for i in issues), issues


def test_the_card_says_it_in_one_line(tmp_path: Path, clock: FixedClock) -> None:
    call = classic_call(clock)
    conditions = call["prefetch"]["conditions"]["entry"]
    diabetes = next(e for e in conditions if e["resource"]["id"] == "dm")
    del diabetes["resource"]["resourceType"]
    client = cds_app(tmp_path, clock=clock).test_client()
    response = client.post(SERVICE, json=call)
    assert response.status_code == 200, response.get_data(as_text=True)
    (card,) = response.get_json()["cards"]
    lines = [line for line in card["detail"].splitlines() if "could have changed" in line]
    assert len(lines) == 1 and "resourceType" in lines[0], card["detail"]


def test_a_bad_date_in_a_prefetch_is_named_by_its_prefetch_key(
    tmp_path: Path, clock: FixedClock
) -> None:
    call = classic_call(clock)
    entries = call["prefetch"]["conditions"]["entry"]
    index = next(i for i, e in enumerate(entries) if e["resource"]["id"] == "ent")
    entries[index]["resource"]["onsetDateTime"] = "2025-13-45"
    client = cds_app(tmp_path, clock=clock).test_client()
    (card,) = client.post(SERVICE, json=call).get_json()["cards"]
    where = f"prefetch.conditions.entry\\[{index}\\].resource.onsetDateTime"
    assert where in card["detail"], card["detail"]
    assert "Bundle.entry" not in card["detail"]


@pytest.mark.parametrize(("change", "where", "says"), [
    (lambda b: b["entry"][1]["resource"].update(code="chronic diarrhea"),
     "Bundle.entry[1].resource.code", "not a CodeableConcept"),
    (lambda b: b["entry"][1].update(resource="hello"),
     "Bundle.entry[1].resource", "not a FHIR resource"),
    (lambda b: b["entry"].__setitem__(1, None), "Bundle.entry[1]", "not an object"),
    (lambda b: b["entry"][1]["resource"].update(resourceType="Conditon"),
     "Bundle.entry[1].resource.resourceType", "'Conditon' is not a FHIR resource type"),
    (lambda b: b["entry"][1]["resource"]["code"]["coding"][0].pop("system"),
     "Bundle.entry[1].resource.code.coding[0].system", "has no system"),
    (lambda b: b["entry"][1]["resource"].update(code={"text": "chronic diarrhoea"}),
     "Bundle.entry[1].resource.code", "text only"),
    (lambda b: b["entry"][1]["resource"].update(subject="Patient/baby1"),
     "Bundle.entry[1].resource.subject", "not a Reference"),
])
def test_one_policy_every_unusable_entry_is_screened_around_and_named(
    client: FlaskClient, profiles: Profiles, change: Any, where: str, says: str
) -> None:
    bundle = _classic()
    change(bundle)
    result = _screen(profiles, bundle)
    # Without the diarrhea: diabetes at 3 months + eczema, row 3 instead of row 1.
    assert result.row.row == 3, "the diarrhea entry did not count"
    listed = {n.location: n.reason for n in result.not_read}
    assert where in listed and says in listed[where], listed
    response = _post(client, bundle)
    assert response.status_code == 200
    assert where in _notes(response.get_json())
    assert _post(client, bundle, Prefer="handling=strict").status_code == 422


def test_an_unknown_field_is_not_read_either_way_and_strict_handling_says_so(
    client: FlaskClient, profiles: Profiles
) -> None:
    bundle = _classic()
    bundle["entry"][1]["resource"]["severity_score"] = 7
    assert not _screen(profiles, bundle).not_read
    response = _post(client, bundle)
    assert response.status_code == 200 and "could have changed" not in _notes(response.get_json())
    strict = _post(client, bundle, Prefer="handling=strict")
    assert strict.status_code == 422
    assert any("severity_score" in i.get("expression", [""])[0]
               for i in strict.get_json()["issue"])


def test_a_patient_without_an_id_and_conditions_pointing_at_nobody_are_named(
    profiles: Profiles
) -> None:
    bundle = _classic()
    del bundle["entry"][0]["resource"]["id"]
    del bundle["entry"][0]["fullUrl"]
    for entry in bundle["entry"][1:]:
        entry["resource"]["subject"] = {"reference": "Patient/infant1"}
    result = _screen(profiles, bundle)
    assert result.tier == "low"
    listed = [n.describe() for n in result.not_read]
    assert any("the Patient has no id" in line for line in listed), listed
    pointing = [line for line in listed if "points at Patient/infant1" in line]
    assert len(pointing) == 3, listed


def test_a_birth_date_after_the_screening_date_gives_no_ages_and_says_why(
    client: FlaskClient, profiles: Profiles
) -> None:
    bundle = _classic()
    bundle["entry"][0]["resource"]["birthDate"] = "2030-01-10"
    result = _screen(profiles, bundle)
    assert result.tier == "low" and result.patient.birth_date is None
    assert any("after the screening date" in n.reason for n in result.not_read)
    explained = explain_result(result)
    ages = [e["ageAtOnset"] for f in explained["criteria"].values() for e in f["evidence"]]
    assert ages and all("before birth" not in age for age in ages), ages


def test_onsets_before_birth_are_not_used_and_not_shown_as_before_birth(
    profiles: Profiles
) -> None:
    bundle = _classic()
    for entry in bundle["entry"][1:]:
        resource = entry["resource"]
        for key in ("onsetDateTime", "onsetAge", "onsetPeriod"):
            resource.pop(key, None)
        resource["onsetDateTime"] = "2019-06-01"
    result = _screen(profiles, bundle)
    before = [n for n in result.not_read if "before the birth date" in n.reason]
    assert len(before) == 3, result.not_read
    # Undated, each criterion is bounded by the boy's age on the screening date (7 months):
    # the triad is still there, high, and no age reads "before birth".
    assert result.tier == "high"
    explained = explain_result(result)
    ages = [e["ageAtOnset"] for f in explained["criteria"].values() for e in f["evidence"]]
    assert all(age.startswith("unknown (at most") for age in ages), ages


def test_a_gender_that_is_not_a_fhir_code_is_named_not_called_unrecorded(
    profiles: Profiles
) -> None:
    bundle = _classic()
    bundle["entry"][0]["resource"]["gender"] = "boy"
    result = _screen(profiles, bundle)
    assert result.patient.sex == "unknown"
    (problem,) = result.not_read
    assert problem.location == "Bundle.entry[0].resource.gender"
    assert "'boy' is not a FHIR gender" in problem.reason


def test_explain_lists_every_problem_with_its_location(profiles: Profiles) -> None:
    bundle = _classic()
    bundle["entry"].append({"resource": {"resourceType": "Condition", "id": "x",
                                         "subject": {"reference": "Patient/baby1"},
                                         "code": {"text": "autoimmune enteropathy?"}}})
    bundle["entry"].append(None)
    explained = explain_result(_screen(profiles, bundle))
    locations = [n["location"] for n in explained["notRead"]]
    assert "Bundle.entry[4].resource.code" in locations and "Bundle.entry[5]" in locations


def test_no_entry_is_dropped_silently_whatever_the_shape(profiles: Profiles) -> None:
    """Each top-level entry is read, passed over as a type the rules never read, or named."""
    bundle = _classic()
    bundle["entry"] += [None, 3, {"resource": []}, {"resource": {}},
                        {"resource": {"resourceType": 7}}, {"fullUrl": "urn:x"},
                        {"request": {"method": "DELETE", "url": "Condition/old"}},
                        {"resource": {"resourceType": "Encounter", "id": "e"}}]
    result = _screen(profiles, bundle)
    named = {n.location.split(".resource")[0] for n in result.not_read}
    assert named == {f"Bundle.entry[{i}]" for i in range(4, 10)}
    assert result.tier == "high"
    assert dt.date.fromisoformat(CLASSIC.bundle["entry"][0]["resource"]["birthDate"])


def test_an_empty_cds_body_asks_for_a_cds_request_not_a_bundle(tmp_path: Path) -> None:
    client = cds_app(tmp_path).test_client()
    response = client.post(SERVICE, data=b"", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "the body is empty; send a CDS Hooks patient-view request as JSON")


def test_a_prefetched_patient_of_another_id_is_called_that_not_missing(
    tmp_path: Path, clock: FixedClock
) -> None:
    call = classic_call(clock)
    call["prefetch"]["patient"]["id"] = "someone-else"
    client = cds_app(tmp_path, clock=clock).test_client()
    response = client.post(SERVICE, json=call)
    assert response.status_code == 412
    error = response.get_json()["error"]
    assert "is Patient/someone-else, not the context's patient Patient/baby1" in error
    assert "missing" not in error
