"""Every error of ``POST /fhir/$ipex-screen`` is an OperationOutcome with the contract's status.

One test per status code (400, 404, 405, 413, 415, 422), what the operation
accepts (every Bundle type the contract names, a Parameters wrapper), that entries
the rules never read are not validated, and that no input gives a 500.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app

from .conftest import scenario_files
from .scenarios import load_scenario

OPERATION = "/fhir/$ipex-screen"
FHIR_JSON = "application/fhir+json"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

Resource = dict[str, Any]


def _patient(**changes: Any) -> Resource:
    return {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "2025-01-10",
            **changes}


def _condition(code: str = "E10.9", **changes: Any) -> Resource:
    return {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": ICD10CM, "code": code}]},
        "onsetDateTime": "2025-03-01",
        **changes,
    }


def _bundle(*resources: Resource, kind: str = "collection") -> Resource:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def _post(client: FlaskClient, body: Any, *, content_type: str = FHIR_JSON) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(OPERATION, data=data, content_type=content_type)


def _outcome(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    """Assert an OperationOutcome with this status whose diagnostics say each fragment."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    diagnostics = issue["diagnostics"]
    for fragment in fragments:
        assert fragment in diagnostics, diagnostics
    assert isinstance(outcome, dict)
    return outcome


# --- 400 -------------------------------------------------------------------------------------


def test_malformed_json_is_400(client: FlaskClient) -> None:
    _outcome(_post(client, b'{"resourceType": "Bundle", "type": '), 400, "not valid JSON")


def test_empty_body_is_400(client: FlaskClient) -> None:
    _outcome(_post(client, b""), 400, "empty")


def test_a_patient_instead_of_a_bundle_is_400(client: FlaskClient) -> None:
    outcome = _outcome(_post(client, _patient()), 400, "Bundle or Parameters", "Patient")
    assert outcome["issue"][0]["code"] == "invalid"


@pytest.mark.parametrize("body", [[1, 2], "a string", 42, None], ids=["array", "string", "number",
                                                                    "null"])
def test_json_that_is_not_an_object_is_400(client: FlaskClient, body: Any) -> None:
    _outcome(_post(client, json.dumps(body)), 400, "Bundle or Parameters")


def test_a_history_bundle_is_400(client: FlaskClient) -> None:
    outcome = _outcome(_post(client, _bundle(_patient(), kind="history")), 400,
                       "Bundle.type", "'history'")
    assert outcome["issue"][0]["expression"] == ["Bundle.type"]


def test_a_bundle_type_that_is_not_a_string_is_400(client: FlaskClient) -> None:
    body = _bundle(_patient())
    body["type"] = {"coding": "collection"}
    _outcome(_post(client, body), 400, "Bundle.type")


def test_parameters_without_a_bundle_is_400(client: FlaskClient) -> None:
    body = {"resourceType": "Parameters",
            "parameter": [{"name": "asOf", "valueDate": "2025-09-01"}]}
    _outcome(_post(client, body), 400, "no parameter named 'bundle'")


def test_an_invalid_as_of_parameter_is_400(client: FlaskClient) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": _bundle(_patient())},
        {"name": "asOf", "valueDate": "next tuesday"}]}
    _outcome(_post(client, body), 400, "asOf")


# --- one unusable entry is read leniently and reported; strict handling refuses it ---------

STRICT = {"Prefer": "handling=strict"}


def _onset_age_beyond_the_calendar() -> Resource:
    condition = _condition()
    del condition["onsetDateTime"]
    condition["onsetAge"] = {"value": 100000, "unit": "years",
                             "system": "http://unitsofmeasure.org", "code": "a"}
    return condition


def _without(resource: Resource, key: str) -> Resource:
    return {k: v for k, v in resource.items() if k != key}


UNREADABLE: dict[str, tuple[Resource, str, str]] = {
    # case: (bundle, where the problem is, what the note says)
    "impossible onset date": (_bundle(_patient(), _condition(onsetDateTime="2025-13-45")),
                              "Bundle.entry[1].resource.onsetDateTime", "is not a date"),
    "no subject, two patients": (
        _bundle(_patient(), _patient(id="q"), _without(_condition(), "subject")),
        "Bundle.entry[2].resource.subject", "has no subject"),
    "birth date not a date": (_bundle(_patient(birthDate="10 January 2025")),
                              "Bundle.entry[0].resource.birthDate", "is not a date"),
    "onset age beyond the calendar": (_bundle(_patient(), _onset_age_beyond_the_calendar()),
                                      "Bundle.entry[1].resource.onsetAge",
                                      "beyond the calendar"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unusable_part_is_screened_around_and_named_in_a_note(
    client: FlaskClient, case: str
) -> None:
    body, where, says = UNREADABLE[case]
    response = _post(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    payload = response.get_json()
    assessments = ([e["resource"] for e in payload["entry"]]
                   if payload["resourceType"] == "Bundle" else [payload])
    for assessment in assessments:
        note = " ".join(n["text"] for n in assessment.get("note", []))
        assert "could have changed this result but" in note and where in note, note
        assert says in note, note


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_strict_handling_refuses_it_with_a_422_naming_the_place(
    client: FlaskClient, case: str
) -> None:
    body, where, says = UNREADABLE[case]
    response = client.post(OPERATION, data=json.dumps(body), content_type=FHIR_JSON,
                           headers=STRICT)
    outcome = _outcome(response, 422, "Prefer: handling=strict")
    located = [i for i in outcome["issue"] if where in i.get("expression", [""])[0]]
    assert located and says in located[0]["diagnostics"], outcome["issue"]


def test_strict_handling_screens_a_record_read_whole(client: FlaskClient) -> None:
    response = client.post(OPERATION, data=json.dumps(_bundle(_patient(), _condition())),
                           content_type=FHIR_JSON, headers=STRICT)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "note" not in response.get_json()


def test_strict_handling_also_names_what_the_fhir_validator_rejects(client: FlaskClient) -> None:
    """An unknown element is not read either way; strict handling reports it."""
    body = _bundle(_patient(), _condition(onsetDate="2025-03-01"))
    lenient = _post(client, body)
    assert lenient.status_code == 200 and "note" not in lenient.get_json()
    response = client.post(OPERATION, data=json.dumps(body), content_type=FHIR_JSON,
                           headers=STRICT)
    outcome = _outcome(response, 422)
    assert any("onsetDate" in i.get("expression", [""])[0] for i in outcome["issue"])


# --- entries the rules never read are not validated ------------------------------------------


def test_invalid_resources_the_rules_never_read_do_not_fail(client: FlaskClient) -> None:
    claim = {"resourceType": "Claim", "id": "x", "status": 12, "total": "lots", "patient": []}
    unknown = {"resourceType": "NotAFhirType", "anything": {"goes": [1, None]}}
    # Asthma (J45.909) is in no ValueSet, so its nonsense onset is never read.
    asthma = _condition("J45.909", id="c2", onsetDateTime="yesterday-ish", subject="Patient/p")
    bundle = _bundle(_patient(), claim, unknown, asthma, _condition(onsetDateTime="2025-03-01"))
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Claim/x"}})
    response = _post(client, bundle)
    assert response.status_code == 200, response.get_data(as_text=True)
    assessment = response.get_json()
    assert assessment["resourceType"] == "RiskAssessment"
    assert [b["reference"] for b in assessment["basis"]] == ["Condition/c1"]


# --- 404, 405 --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fhir/Patient/p", "/fhir/no/such/path",
                                  "/fhir/ValueSet/not-a-value-set"])
def test_an_unknown_path_under_fhir_is_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    outcome = _outcome(response, 404)
    assert outcome["issue"][0]["code"] == "not-found"
    assert outcome["issue"][0]["diagnostics"]


def test_get_on_the_operation_is_405(client: FlaskClient) -> None:
    response = client.get(OPERATION)
    outcome = _outcome(response, 405, "method is not allowed")
    assert outcome["issue"][0]["code"] == "not-supported"


# --- 413 -------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "off",
                      "max_body_mb": 0.001})
    client = app.test_client()
    big = _bundle(_patient(), *[_condition(id=f"c{i}") for i in range(20)])
    assert len(json.dumps(big)) > 0.001 * 1024 * 1024
    _outcome(_post(client, big), 413, "limit")
    small = _post(client, _bundle(_patient()))
    assert small.status_code == 200, "a body under the limit is still screened"


# --- 415 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml",
                                          "application/fhir+xml", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415(client: FlaskClient, content_type: str) -> None:
    response = _post(client, json.dumps(_bundle(_patient())), content_type=content_type)
    outcome = _outcome(response, 415, "application/fhir+json")
    assert outcome["issue"][0]["code"] == "not-supported"


# --- 422 -------------------------------------------------------------------------------------


def test_a_bundle_with_no_patient_is_422(client: FlaskClient) -> None:
    _outcome(_post(client, _bundle(_condition())), 422, "no Patient")


def test_an_empty_bundle_is_422(client: FlaskClient) -> None:
    _outcome(_post(client, {"resourceType": "Bundle", "type": "collection"}), 422, "no Patient")


# --- what the operation accepts --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["collection", "searchset", "transaction", "batch", "document"])
@pytest.mark.parametrize("content_type", [FHIR_JSON, "application/json",
                                          "application/fhir+json; charset=utf-8"])
def test_every_bundle_type_and_media_type_is_accepted(
    client: FlaskClient, kind: str, content_type: str
) -> None:
    response = _post(client, _bundle(_patient()), content_type=content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["resourceType"] == "RiskAssessment"


def test_a_parameters_wrapped_bundle_screens_like_the_bare_bundle(client: FlaskClient) -> None:
    scenario = load_scenario(next(p for p in scenario_files()
                                  if p.stem == "classic-infant-boy-triad"))
    wrapped = {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": scenario.bundle},
        {"name": "asOf", "valueDate": scenario.as_of.isoformat()}]}
    response = _post(client, wrapped)
    assert response.status_code == 200, response.get_data(as_text=True)
    assessment = response.get_json()
    assert assessment["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert sorted(b["reference"] for b in assessment["basis"]) == [
        "Condition/derm", "Condition/dm", "Condition/ent"]
    assert "FOXP3" in assessment["mitigation"]
    bare = _post(client, scenario.bundle)  # as of today: the same boy, the same evidence
    assert bare.status_code == 200
    assert bare.get_json()["subject"] == assessment["subject"] == {"reference": "Patient/baby1"}
    assert sorted(b["reference"] for b in bare.get_json()["basis"]) == sorted(
        b["reference"] for b in assessment["basis"])


# --- never a 500 -----------------------------------------------------------------------------


def test_codings_that_are_not_a_list_are_not_read(client: FlaskClient) -> None:
    """Before validation the code filter meets raw JSON: a number where codings belong."""
    condition = _condition(id="odd")
    condition["code"] = {"coding": 5}
    order = {"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p"}, "code": {"coding": 7.5}}
    observation = {"resourceType": "Observation", "id": "o", "status": "final",
                   "code": {"coding": True}, "component": [{"code": {"coding": 3}}]}
    response = _post(client, _bundle(_patient(), condition, order, observation))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "basis" not in response.get_json()


def test_a_birth_date_at_the_end_of_the_calendar_is_screened(client: FlaskClient) -> None:
    """Age limits that fall after 9999-12-31 are never reached; the tier table still runs."""
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": _bundle(_patient(birthDate="9999-12-31"))},
        {"name": "asOf", "valueDate": "2025-09-01"}]}
    response = _post(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "low"


_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["9999-12-31", "0001-01-01", "2025-02-30", "2025-01-01T25:00:00Z",
                     "Patient/", "urn:uuid:", "E10.9", "HP:0002041"]),
    st.lists(st.none(), max_size=2), st.just({}),
    st.just({"value": 1e9, "unit": "a", "code": "a"}), st.just({"coding": 5}),
    st.just({"reference": 5}),
)


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    children = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, child in children:
        found.extend(_leaf_paths(child, (*path, key)))
    return found


_SCENARIOS = [load_scenario(p) for p in scenario_files()]


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_mutated_scenario_ever_gives_a_500(client: FlaskClient, data: st.DataObject) -> None:
    """Replace up to three parts of a real scenario with odd JSON: always 200 or a 4xx."""
    scenario = data.draw(st.sampled_from(_SCENARIOS), label="scenario")
    bundle = copy.deepcopy(scenario.bundle)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="mutations")):
        path = data.draw(st.sampled_from(_leaf_paths(bundle)), label="path")
        target = bundle
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = copy.deepcopy(data.draw(_ODD_VALUES, label="value"))
    response = _post(client, {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": bundle},
        {"name": "asOf", "valueDate": scenario.as_of.isoformat()}]})
    assert response.status_code in (200, 400, 413, 422), response.get_data(as_text=True)
    payload = response.get_json()
    if response.status_code != 200:
        assert payload["resourceType"] == "OperationOutcome"
        assert payload["issue"][0]["diagnostics"]


# --- gzip bodies ------------------------------------------------------------------------------


def _gzip_post(client: FlaskClient, data: bytes, **headers: str) -> Any:
    return client.post(OPERATION, data=data, content_type=FHIR_JSON,
                       headers={"Content-Encoding": "gzip", **headers})


def test_a_gzip_body_is_screened_like_the_plain_one(client: FlaskClient) -> None:
    import gzip

    body = json.dumps(_bundle(_patient(), _condition())).encode()
    plain = _post(client, body).get_json()
    zipped = _gzip_post(client, gzip.compress(body))
    assert zipped.status_code == 200, zipped.get_data(as_text=True)
    assert zipped.get_json()["prediction"] == plain["prediction"]


def test_a_gzip_bomb_is_413_by_its_decompressed_size(tmp_path: Path) -> None:
    import gzip

    app = create_app({"state_db": str(tmp_path / "s.sqlite3"), "cds_auth": "off",
                      "max_body_mb": 1})
    small = app.test_client()
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))  # 50 MB of spaces: about 50 KB sent
    assert len(bomb) < 1024 * 1024
    _outcome(_gzip_post(small, bomb), 413, "inflates to more than the limit")


def test_gzip_without_its_header_is_named_not_called_invalid_utf8(client: FlaskClient) -> None:
    import gzip

    data = gzip.compress(json.dumps(_bundle(_patient())).encode())
    _outcome(_post(client, data), 400, "gzip-compressed but has no 'Content-Encoding: gzip'")


def test_a_broken_gzip_body_is_400_and_another_encoding_415(client: FlaskClient) -> None:
    _outcome(_gzip_post(client, b"\x1f\x8bnot really gzip"), 400, "not valid gzip")
    response = client.post(OPERATION, data=b"{}", content_type=FHIR_JSON,
                           headers={"Content-Encoding": "br"})
    _outcome(response, 415, "Content-Encoding br is not supported")
