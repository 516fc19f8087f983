"""CDS Hooks ``patient-view``: discovery, the envelope, cards over the scenario corpus, auth, CORS.

The helpers shared with the other CDS tests are in ``tests/cds_support.py``.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import responses
from fhir.resources.R4B.servicerequest import ServiceRequest
from flask.testing import FlaskClient

from .cds_support import (
    CDS_DATA,
    CLASSIC,
    FEEDBACK,
    SCENARIOS,
    SERVICE,
    cds_app,
    classic_call,
    hook_call,
    prefetch_call,
    searchset,
)
from .conftest import load_json, scenario_files, synthea_files
from .fixed_clock import FixedClock
from .jwt_support import FHIR_SERVER, JWKS_URI, Signer, es384_signer, jwks, write_issuers
from .scenarios import load_scenario

FEMALE = SCENARIOS / "female-classic-triad-gene-panel.json"
UNKNOWN_SEX = SCENARIOS / "gender-unknown-panel-with-foxp3.json"
PUBLIC = "https://ipex.example.org"


@pytest.fixture()
def cds(tmp_path: Path, clock: FixedClock) -> FlaskClient:
    return cds_app(tmp_path, clock=clock).test_client()


# --- discovery --------------------------------------------------------------------------


def test_discovery_lists_the_one_service_with_its_prefetch_templates(tmp_path: Path) -> None:
    # Open even where every CDS call is refused (non-loopback host, no auth configured).
    client = cds_app(tmp_path, cds_auth=None, bind_host="0.0.0.0").test_client()
    response = client.get("/cds-services")
    assert response.status_code == 200 and response.mimetype == "application/json"
    (service,) = response.get_json()["services"]
    assert service["id"] == "ipex-foxp3-screen" and service["hook"] == "patient-view"
    assert service["title"] and service["description"]
    assert service["prefetch"] == {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}",
        "orders": "ServiceRequest?patient={{context.patientId}}",
    }
    for template in service["prefetch"].values():  # tokens: {{context.<root field>}} only
        assert re.findall(r"\{\{([^}]*)\}\}", template) == ["context.patientId"]


# --- the envelope -------------------------------------------------------------------------


def _bad(call: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    found = copy.deepcopy(call)
    *parents, last = path.split(".")
    holder = found
    for part in parents:
        holder = holder[part]
    if value is KeyError:
        del holder[last]
    else:
        holder[last] = value
    return found


BAD_ENVELOPES = [
    ("no-hook", "hook", KeyError, "hook"),
    ("other-hook", "hook", "order-select", "hook"),
    ("no-hookInstance", "hookInstance", KeyError, "hookInstance"),
    ("empty-hookInstance", "hookInstance", "", "hookInstance"),
    ("no-context", "context", KeyError, "context"),
    ("no-patientId", "context.patientId", KeyError, "context.patientId"),
    ("patientId-not-an-id", "context.patientId", "1/../../Condition", "context.patientId"),
    ("patientId-number", "context.patientId", 12, "context.patientId"),
    ("fhirServer-not-a-url", "fhirServer", "not a url", "fhirServer"),
    ("token-without-fhirServer", "fhirServer", KeyError, "fhirServer"),
    ("token-without-access_token", "fhirAuthorization.access_token", KeyError,
     "fhirAuthorization.access_token"),
    ("token-type-not-bearer", "fhirAuthorization.token_type", "MAC",
     "fhirAuthorization.token_type"),
    ("token-without-subject", "fhirAuthorization.subject", KeyError,
     "fhirAuthorization.subject"),
    ("prefetch-not-an-object", "prefetch", ["a"], "prefetch"),
    ("conditions-not-a-bundle", "prefetch.conditions", {"resourceType": "Condition"},
     "prefetch.conditions"),
    ("patient-not-a-patient", "prefetch.patient", {"resourceType": "Condition"},
     "prefetch.patient"),
]


@pytest.mark.parametrize(("path", "value", "named"), [c[1:] for c in BAD_ENVELOPES],
                         ids=[c[0] for c in BAD_ENVELOPES])
def test_a_malformed_call_gets_400_naming_the_field(
        cds: FlaskClient, clock: FixedClock, path: str, value: Any, named: str
) -> None:
    call = classic_call(clock)
    call["fhirServer"] = FHIR_SERVER
    call["fhirAuthorization"] = hook_call("x", token="t")["fhirAuthorization"]
    with responses.RequestsMock() as ehr:  # nothing may be fetched for a bad call
        response = cds.post(SERVICE, json=_bad(call, path, value))
        assert len(ehr.calls) == 0
    assert response.status_code == 400, response.get_json()
    assert response.mimetype == "application/json"
    assert named in response.get_json()["error"]


@pytest.mark.parametrize(("data", "content_type", "status"), [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"", "application/json", 400),
    (b"hook=patient-view", "application/x-www-form-urlencoded", 415),
])
def test_a_body_that_is_not_a_json_object_gets_a_json_error(
        cds: FlaskClient, data: bytes, content_type: str, status: int) -> None:
    response = cds.post(SERVICE, data=data, content_type=content_type)
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_fields_are_tolerated(cds: FlaskClient, clock: FixedClock) -> None:
    call = classic_call(clock)
    call["extension"] = {"org.example.flag": True}
    call["context"]["somethingNew"] = {"a": 1}
    call["prefetch"]["unrequested"] = {"resourceType": "Encounter", "id": "e"}
    response = cds.post(SERVICE, json=call)
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_an_unknown_service_is_404_and_a_get_is_405(cds: FlaskClient) -> None:
    for path in ("/cds-services/other-service", "/cds-services/other-service/feedback"):
        response = cds.post(path, json={"hook": "patient-view"})
        assert response.status_code == 404 and "error" in response.get_json()
    assert cds.get(SERVICE).status_code == 405


# --- cards over the scenario corpus -------------------------------------------------------


def check_card(card: dict[str, Any], *, pid: str) -> None:
    """The card invariants the spec and the contract set."""
    assert isinstance(card["uuid"], str) and str(uuid.UUID(card["uuid"])) == card["uuid"]
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    test = card["suggestions"][0]["actions"][0]["resource"]["code"]["text"]
    assert card["summary"].endswith(f"consider {test}"), "the summary names the whole test"
    assert card["indicator"] in ("info", "warning")
    assert card["source"]["label"] and card["source"]["url"].startswith("https://")
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one"
    assert str(uuid.UUID(suggestion["uuid"])) == suggestion["uuid"] != card["uuid"]
    assert suggestion["label"]
    (action,) = suggestion["actions"]
    assert action["type"] == "create" and action["description"]
    order = action["resource"]
    ServiceRequest.model_validate(order)  # a valid R4(B) ServiceRequest
    assert (order["status"], order["intent"]) == ("draft", "proposal")
    assert order["subject"] == {"reference": f"Patient/{pid}"}
    assert order["code"]["text"]
    assert "IPEX" in order["reasonCode"][0]["text"]
    assert order["reasonCode"][0]["text"].startswith("Suspected")
    assert card["overrideReasons"]
    for reason in card["overrideReasons"]:
        assert reason["system"] and reason["code"] and reason["display"]
    assert {"label": "GeneReviews: IPEX syndrome (NBK1118)",
            "url": "https://www.ncbi.nlm.nih.gov/books/NBK1118/",
            "type": "absolute"} in card["links"]
    for link in card["links"]:
        assert ("appContext" in link) == (link["type"] == "smart"), "only the app gets context"
    (app,) = [link for link in card["links"] if link["type"] == "smart"]
    assert app["url"].endswith("/timeline/launch.html")
    assert {"asOf", "rulesVersion", "row"} <= set(json.loads(app["appContext"]))
    assert any(link["type"] == "absolute" and link["url"].endswith("/source-attributes")
               for link in card["links"])


def _no_nulls_or_empties(value: Any, where: str = "") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert item is not None and item != "" and item != [] and item != {}, where + key
            _no_nulls_or_empties(item, f"{where}{key}.")
    elif isinstance(value, list):
        for item in value:
            _no_nulls_or_empties(item, where)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_every_scenario_gives_the_card_the_screening_calls_for(
        cds: FlaskClient, clock: FixedClock, path: Path) -> None:
    scenario = load_scenario(path)
    clock.set_today(scenario.as_of)
    expected = scenario.expect[0]
    call = prefetch_call(scenario.bundle)
    with responses.RequestsMock() as ehr:  # full prefetch: nothing is fetched
        response = cds.post(SERVICE, json=call)
        assert len(ehr.calls) == 0
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    if expected["recommendation"] is None:  # low, or suppressed
        assert cards == []
        return
    assert not expected.get("suppressed")
    (card,) = cards
    check_card(card, pid=call["context"]["patientId"])
    _no_nulls_or_empties(card)
    assert card["indicator"] == {"high": "warning", "moderate": "info"}[expected["tier"]]
    for criterion in expected["criteria"] + expected.get("supporting", []):
        assert (f"| {criterion}: " in card["detail"]
                or f"({criterion}: " in card["detail"]), criterion
    test = card["suggestions"][0]["actions"][0]["resource"]["code"]["text"]
    assert ("FOXP3" in test and "panel" not in test) == (expected["recommendation"] == "IPEX/male")


def test_a_synthea_child_gets_no_card(cds: FlaskClient) -> None:
    from bench.load import cds_request, typical_child

    path = typical_child()
    assert path in synthea_files()
    response = cds.post(SERVICE, json=cds_request(load_json(path)))
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_the_detail_table_escapes_record_text(cds: FlaskClient,
                                              clock: FixedClock) -> None:
    call = classic_call(clock)
    hostile = "Chronic diarrhea | **x** [y](javascript:alert(1)) <img src=x onerror=1> `z`"
    for condition in call["prefetch"]["conditions"]["entry"]:
        for coding in condition["resource"]["code"]["coding"]:
            coding["display"] = hostile
    (card,) = cds.post(SERVICE, json=call).get_json()["cards"]
    rows = [line for line in card["detail"].splitlines() if line.startswith("| ENT")]
    (row,) = rows
    assert len(re.findall(r"(?<!\\)\|", row)) == 6  # five cells: no pipe from the record
    assert "<img" not in card["detail"] and "&lt;img src=x onerror=1&gt;" in row
    assert "\\*\\*x\\*\\*" in row and "\\[y\\]\\(javascript:alert\\(1\\)\\)" in row
    assert "\\`z\\`" in row


def test_the_cards_own_order_fed_back_suppresses_the_next_card(
        cds: FlaskClient, clock: FixedClock) -> None:
    # Every recommendation: FOXP3 for boys, the panel with FOXP3 for unknown sex, and the
    # IPEX-like panel for girls and after a negative FOXP3 result.
    negative = SCENARIOS / "negative-foxp3-result-ipex-like-panel.json"
    for path in (CLASSIC, UNKNOWN_SEX, FEMALE, negative):
        scenario = load_scenario(path)
        clock.set_today(scenario.as_of)
        call = prefetch_call(scenario.bundle)
        (card,) = cds.post(SERVICE, json=call).get_json()["cards"]
        order = dict(card["suggestions"][0]["actions"][0]["resource"], id="accepted-1")
        call["prefetch"]["orders"] = searchset([order])
        again = cds.post(SERVICE, json=call)
        assert again.status_code == 200 and again.get_json() == {"cards": []}, path.stem


def test_order_code_is_used_for_the_foxp3_test_only(tmp_path: Path,
                                                    clock: FixedClock) -> None:
    client = cds_app(tmp_path, clock=clock, order_code=("http://loinc.org", "99999-9", "FOXP3 seq")
                     ).test_client()
    (male,) = client.post(SERVICE, json=classic_call(clock)).get_json()["cards"]
    code = male["suggestions"][0]["actions"][0]["resource"]["code"]
    assert code["coding"] == [{"system": "http://loinc.org", "code": "99999-9",
                               "display": "FOXP3 seq"}]
    assert code["text"] == "FOXP3 gene sequencing with deletion/duplication analysis"
    female = load_scenario(FEMALE)
    clock.set_today(female.as_of)
    (card,) = client.post(SERVICE, json=prefetch_call(female.bundle)).get_json()["cards"]
    panel = card["suggestions"][0]["actions"][0]["resource"]["code"]
    assert "coding" not in panel and "panel" in panel["text"]
    assert "IPEX-like" in card["summary"]


def test_another_patients_resources_are_ignored(cds: FlaskClient,
                                                clock: FixedClock) -> None:
    call = classic_call(clock)
    conditions = call["prefetch"]["conditions"]["entry"]
    for entry in conditions:
        entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    assert cds.post(SERVICE, json=call).get_json() == {"cards": []}
    # The same resources with absolute and versioned references to this patient count.
    forms = [f"{FHIR_SERVER}/Patient/baby1", "Patient/baby1/_history/3", "Patient/baby1"]
    for entry, form in zip(conditions, forms, strict=True):
        entry["resource"]["subject"] = {"reference": form}
    assert len(cds.post(SERVICE, json=call).get_json()["cards"]) == 1


def test_a_prefetched_patient_that_is_someone_else_is_fetched_instead(
        cds: FlaskClient, clock: FixedClock) -> None:
    call = classic_call(clock)
    call["prefetch"]["patient"] = {**call["prefetch"]["patient"], "id": "someone-else",
                                   "gender": "female"}
    response = cds.post(SERVICE, json=call)  # no fhirServer to fetch the right one from
    assert response.status_code == 412


# --- null versus missing (no fhirServer: nothing can be fetched) ----------------------------


def test_null_prefetch_means_no_data_and_nothing_is_fetched(
        cds: FlaskClient, clock: FixedClock) -> None:
    call = classic_call(clock)
    call["fhirServer"] = FHIR_SERVER
    for key in ("conditions", "observations", "orders"):
        call["prefetch"][key] = None
    with responses.RequestsMock() as ehr:
        response = cds.post(SERVICE, json=call)
        assert len(ehr.calls) == 0
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_null_patient_is_412_nothing_to_screen(cds: FlaskClient,
                                               clock: FixedClock) -> None:
    call = classic_call(clock)
    call["prefetch"]["patient"] = None
    response = cds.post(SERVICE, json=call)
    assert response.status_code == 412 and "patient" in response.get_json()["error"]


@pytest.mark.parametrize("key", ["patient", "conditions", "observations", "orders"])
def test_a_missing_key_without_fhir_server_is_412(
        cds: FlaskClient, clock: FixedClock, key: str) -> None:
    call = classic_call(clock)
    del call["prefetch"][key]
    response = cds.post(SERVICE, json=call)
    assert response.status_code == 412
    assert key in response.get_json()["error"] and "fhirServer" in response.get_json()["error"]


# --- auth gate ----------------------------------------------------------------------------


def test_auth_off_ignores_an_authorization_header(cds: FlaskClient,
                                                  clock: FixedClock) -> None:
    for header in ("Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "garbage"):
        response = cds.post(SERVICE, json=classic_call(clock),
                            headers={"Authorization": header})
        assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_a_public_host_without_auth_settings_refuses_every_cds_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, clock: FixedClock) -> None:
    with caplog.at_level(logging.INFO, logger="ipex_screen.cds"):
        client = cds_app(tmp_path, clock=clock, cds_auth=None, bind_host="0.0.0.0").test_client()
    reasons = [r.getMessage() for r in caplog.records if "401" in r.getMessage()]
    assert len(reasons) == 1 and "IPEX_CDS_ISSUERS_FILE" in reasons[0]
    for path, body in ((SERVICE, classic_call(clock)),
                       (FEEDBACK, load_json(CDS_DATA / "spec-feedback-overridden.json"))):
        response = client.post(path, json=body)
        assert response.status_code == 401 and response.data == b""
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/cds-services").status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", None])
def test_a_loopback_host_without_auth_settings_is_open(
        tmp_path: Path, clock: FixedClock, host: str | None) -> None:
    client = cds_app(tmp_path, clock=clock, cds_auth=None, bind_host=host).test_client()
    assert client.post(SERVICE, json=classic_call(clock)).status_code == 200


def test_jwt_mode_without_issuers_refuses(tmp_path: Path, clock: FixedClock) -> None:
    client = cds_app(tmp_path, clock=clock, cds_auth="jwt").test_client()
    response = client.post(SERVICE, json=classic_call(clock),
                           headers={"Authorization": "Bearer x.y.z"})
    assert response.status_code == 401 and response.data == b""


@pytest.fixture(scope="module")
def signer() -> Signer:
    return es384_signer()


def test_jwt_mode_checks_the_token_audience_and_fhir_server(
        tmp_path: Path, clock: FixedClock, signer: Signer) -> None:
    issuers = write_issuers(tmp_path / "issuers.json", fhir_servers=[FHIR_SERVER])
    client = cds_app(tmp_path, clock=clock, cds_auth=None, cds_issuers_file=str(issuers),
                     public_base_url=PUBLIC, bind_host="0.0.0.0").test_client()
    call = classic_call(clock)
    call["fhirServer"] = FHIR_SERVER
    with responses.RequestsMock(assert_all_requests_are_fired=False) as keys:
        keys.get(JWKS_URI, json=jwks(signer))

        def post(body: dict[str, Any], token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return int(client.post(SERVICE, json=body, headers=headers).status_code)

        assert post(call, signer.token(aud=PUBLIC + SERVICE)) == 200
        assert post(call, None) == 401
        assert post(call, signer.token(aud=PUBLIC + FEEDBACK)) == 401
        hostile = dict(call, fhirServer="https://attacker.example.net/fhir")
        assert post(hostile, signer.token(aud=PUBLIC + SERVICE)) == 401
        # An unauthenticated caller learns nothing about the body: 401 before 400.
        assert post({"hook": "nope"}, None) == 401
        assert post({"hook": "nope"}, signer.token(aud=PUBLIC + SERVICE)) == 400
        feedback = load_json(CDS_DATA / "spec-feedback-overridden.json")
        assert client.post(FEEDBACK, json=feedback, headers={
            "Authorization": f"Bearer {signer.token(aud=PUBLIC + FEEDBACK)}"}).status_code == 200


# --- CORS ---------------------------------------------------------------------------------


def _preflight(client: FlaskClient, origin: str, path: str = SERVICE) -> Any:
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_allowlist_and_preflight_without_auth(tmp_path: Path,
                                                   clock: FixedClock) -> None:
    sandbox = "https://sandbox.cds-hooks.org"
    # jwt mode: preflights are answered without any token.
    client = cds_app(tmp_path, clock=clock, cds_auth="jwt", cors_origins=(sandbox,)).test_client()
    for path in ("/cds-services", SERVICE, FEEDBACK):
        allowed = _preflight(client, sandbox, path)
        assert allowed.status_code == 200, path
        assert allowed.headers["Access-Control-Allow-Origin"] == sandbox
        allowed_headers = allowed.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed_headers and "content-type" in allowed_headers
        assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    refused = _preflight(client, "https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in refused.headers
    # The answer itself (here a 401) carries the header so the browser can read it.
    unauthorised = client.post(SERVICE, json=classic_call(clock), headers={"Origin": sandbox})
    assert unauthorised.status_code == 401
    assert unauthorised.headers["Access-Control-Allow-Origin"] == sandbox
    assert "Origin" in unauthorised.headers["Vary"]
    # Not a CDS path: no CORS headers.
    assert "Access-Control-Allow-Origin" not in client.get(
        "/fhir/metadata", headers={"Origin": sandbox}).headers


def test_cors_star_allows_any_origin_and_none_configured_allows_none(tmp_path: Path) -> None:
    anyone = cds_app(tmp_path, cors_origins=("*",)).test_client()
    response = anyone.get("/cds-services", headers={"Origin": "https://ehr.example.net"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://ehr.example.net"
    nobody = cds_app(tmp_path).test_client()
    assert "Access-Control-Allow-Origin" not in _preflight(nobody, "https://x.example").headers


def test_spec_example_request_validates(cds: FlaskClient) -> None:
    """The spec's own example request is accepted (its fetches: ``test_cds_fetch``)."""
    call = load_json(CDS_DATA / "spec-example-request.json")
    call["prefetch"] = {"patient": call["prefetch"]["patientToGreet"], "conditions": None,
                        "observations": None, "orders": None}
    response = cds.post(SERVICE, data=json.dumps(call), content_type="application/json")
    assert response.status_code == 200 and response.get_json() == {"cards": []}


CARD_ATTRIBUTES = {"uuid", "summary", "detail", "indicator", "source", "suggestions",
                   "selectionBehavior", "overrideReasons", "links"}


def test_the_card_has_the_shape_of_the_spec_example_response(
        cds: FlaskClient, clock: FixedClock) -> None:
    example = load_json(CDS_DATA / "spec-example-response.json")
    ours = cds.post(SERVICE, json=classic_call(clock)).get_json()
    assert set(ours) == set(example) == {"cards"}
    (card,) = ours["cards"]
    assert set(card) <= CARD_ATTRIBUTES
    for theirs in example["cards"]:
        for key in set(card) & set(theirs):
            assert type(card[key]) is type(theirs[key]), key
    their_reason = example["cards"][1]["overrideReasons"][0]
    assert all(set(reason) == set(their_reason) for reason in card["overrideReasons"])
    their_links = {link["type"]: set(link) for link in example["cards"][0]["links"]}
    assert all(set(link) == their_links[link["type"]] for link in card["links"]), (
        "absolute links and the smart link (with appContext) as in the spec's example")
    assert set(card["source"]) <= set(example["cards"][0]["source"])


def test_the_suggested_orders_pass_two_independent_fhir_validators(
        cds: FlaskClient, clock: FixedClock) -> None:
    from .fhir_validation import ValidatorUnavailableError, assert_valid

    orders = []
    for path in (CLASSIC, FEMALE, UNKNOWN_SEX):
        scenario = load_scenario(path)
        clock.set_today(scenario.as_of)
        (card,) = cds.post(SERVICE, json=prefetch_call(scenario.bundle)).get_json()["cards"]
        orders.append(card["suggestions"][0]["actions"][0]["resource"])
    try:
        assert_valid(orders)
    except ValidatorUnavailableError as missing:
        pytest.skip(str(missing))
