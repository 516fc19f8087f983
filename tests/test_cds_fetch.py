"""Fetching what the prefetch lacks: what is sent, paging, and each failure mode (412)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from flask.testing import FlaskClient

from .cds_support import (
    CDS_DATA,
    CLASSIC,
    SERVICE,
    cds_app,
    hook_call,
    prefetch_call,
    searchset,
    split_record,
    without_uuids,
)
from .conftest import load_json
from .fixed_clock import FixedClock
from .jwt_support import FHIR_SERVER
from .scenarios import load_scenario

TOKEN = "opaque-access-token-4f1c"


@pytest.fixture()
def cds(tmp_path: Path, clock: FixedClock) -> FlaskClient:
    return cds_app(tmp_path, clock=clock).test_client()


KINDS = {"conditions": "Condition", "observations": "Observation", "orders": "ServiceRequest"}


def classic(clock: FixedClock) -> tuple[str, dict[str, Any], dict[str, list[Any]]]:
    scenario = load_scenario(CLASSIC)
    clock.set_today(scenario.as_of)
    return split_record(scenario.bundle)


def serve_record(ehr: responses.RequestsMock, pid: str, patient: dict[str, Any],
                 by_key: dict[str, list[Any]], *, base: str = FHIR_SERVER) -> None:
    ehr.get(f"{base}/Patient/{pid}", json=patient)
    for key, kind in KINDS.items():
        ehr.get(f"{base}/{kind}", json=searchset(by_key[key]),
                match=[responses.matchers.query_param_matcher({"patient": pid})])


def assert_sent_with_token(ehr: responses.RequestsMock, *, token: str = TOKEN) -> None:
    assert ehr.calls, "nothing was fetched"
    for call in ehr.calls:
        assert call.request.headers["Authorization"] == f"Bearer {token}"
        assert call.request.headers["Accept"] == "application/fhir+json"


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_no_prefetch_fetches_all_four_with_the_token_and_gives_the_same_card(
        cds: FlaskClient, clock: FixedClock) -> None:
    pid, patient, by_key = classic(clock)
    (prefetched,) = cds.post(SERVICE, json=prefetch_call(load_scenario(CLASSIC).bundle)
                             ).get_json()["cards"]
    with responses.RequestsMock() as ehr:
        serve_record(ehr, pid, patient, by_key)
        response = cds.post(SERVICE, json=hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN))
        assert_sent_with_token(ehr)
        sent = [(urlsplit(c.request.url).path, _query(c.request.url)) for c in ehr.calls]
    assert response.status_code == 200
    assert sent == [
        ("/fhir/Patient/baby1", {}),
        ("/fhir/Condition", {"patient": ["baby1"]}),
        ("/fhir/Observation", {"patient": ["baby1"]}),
        ("/fhir/ServiceRequest", {"patient": ["baby1"]}),
    ]
    (card,) = response.get_json()["cards"]
    assert without_uuids(card) == without_uuids(prefetched)


def test_the_spec_example_request_fetches_what_its_prefetch_lacks(cds: FlaskClient) -> None:
    call = load_json(CDS_DATA / "spec-example-request.json")
    base = call["fhirServer"]
    patient = call["prefetch"]["patientToGreet"]
    with responses.RequestsMock() as ehr:
        serve_record(ehr, "1288992", patient,
                     {"conditions": [], "observations": [], "orders": []}, base=base)
        response = cds.post(SERVICE, json=call)
        assert_sent_with_token(ehr, token="some-opaque-fhir-access-token")
        assert len(ehr.calls) == 4
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_only_missing_keys_and_operation_outcomes_are_fetched(
        cds: FlaskClient, clock: FixedClock) -> None:
    pid, patient, by_key = classic(clock)
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "too-costly", "diagnostics": "query too large"}]}
    call = hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN, prefetch={
        "patient": patient, "conditions": outcome, "orders": None})  # observations missing
    with responses.RequestsMock() as ehr:
        ehr.get(f"{FHIR_SERVER}/Condition", json=searchset(by_key["conditions"]))
        ehr.get(f"{FHIR_SERVER}/Observation", json=searchset([]))
        response = cds.post(SERVICE, json=call)
        assert_sent_with_token(ehr)
        paths = [urlsplit(c.request.url).path for c in ehr.calls]
    assert paths == ["/fhir/Condition", "/fhir/Observation"]
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def _paged(resources: list[dict[str, Any]], next_url: str | None) -> dict[str, Any]:
    page = searchset(resources)
    if next_url:
        page["link"] = [{"relation": "self", "url": "ignored"},
                        {"relation": "next", "url": next_url}]
    return page


def test_searchset_pages_are_followed_on_the_same_origin(
        cds: FlaskClient, clock: FixedClock) -> None:
    pid, patient, by_key = classic(clock)
    first, *rest = by_key["conditions"]
    page2 = f"{FHIR_SERVER}?_getpages=abc&_getpagesoffset=1"
    page3 = f"{FHIR_SERVER}?_getpages=abc&_getpagesoffset=2"
    with responses.RequestsMock() as ehr:
        ehr.get(f"{FHIR_SERVER}/Condition", json=_paged([first], page2))
        ehr.get(page2, json=_paged(rest[:1], page3),
                match=[responses.matchers.query_param_matcher(
                    {"_getpages": "abc", "_getpagesoffset": "1"})])
        ehr.get(page3, json=_paged(rest[1:], None),
                match=[responses.matchers.query_param_matcher(
                    {"_getpages": "abc", "_getpagesoffset": "2"})])
        call = hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN, prefetch={
            "patient": patient, "observations": None, "orders": None})
        response = cds.post(SERVICE, json=call)
        assert_sent_with_token(ehr)
        assert len(ehr.calls) == 3
    # Only all three pages together hold the triad.
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_a_prefetched_searchset_with_a_next_link_is_completed_from_the_server(
        cds: FlaskClient, clock: FixedClock) -> None:
    pid, patient, by_key = classic(clock)
    first, *rest = by_key["conditions"]
    page2 = f"{FHIR_SERVER}/Condition?patient={pid}&page=2"
    with responses.RequestsMock() as ehr:
        ehr.get(page2, json=_paged(rest, None))
        call = hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN, prefetch={
            "patient": patient, "conditions": _paged([first], page2), "observations": None,
            "orders": None})
        response = cds.post(SERVICE, json=call)
        assert_sent_with_token(ehr)
    assert len(response.get_json()["cards"]) == 1


@pytest.mark.parametrize("foreign", [
    "https://attacker.example.net/fhir/Condition?page=2",
    "http://ehr.example.org/fhir/Condition?page=2",          # scheme differs
    "https://ehr.example.org:8443/fhir/Condition?page=2",    # port differs
])
def test_a_next_link_to_another_origin_is_refused_with_412(
        cds: FlaskClient, clock: FixedClock, foreign: str) -> None:
    pid, patient, by_key = classic(clock)
    with responses.RequestsMock() as ehr:
        ehr.get(f"{FHIR_SERVER}/Condition", json=_paged(by_key["conditions"][:1], foreign))
        call = hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN, prefetch={
            "patient": patient, "observations": None, "orders": None})
        response = cds.post(SERVICE, json=call)
        assert [c.request.url.split("?")[0] for c in ehr.calls] == [f"{FHIR_SERVER}/Condition"]
    assert response.status_code == 412
    assert "another origin" in response.get_json()["error"]


def test_more_pages_than_the_cap_is_412(tmp_path: Path, clock: FixedClock) -> None:
    client = cds_app(tmp_path, clock=clock, fhir_max_pages=2).test_client()
    pid, patient, _ = classic(clock)
    with responses.RequestsMock() as ehr:
        ehr.get(f"{FHIR_SERVER}/Condition", json=_paged([], f"{FHIR_SERVER}/p2"))
        ehr.get(f"{FHIR_SERVER}/p2", json=_paged([], f"{FHIR_SERVER}/p3"))
        call = hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN, prefetch={
            "patient": patient, "observations": None, "orders": None})
        response = client.post(SERVICE, json=call)
        assert len(ehr.calls) == 2
    assert response.status_code == 412 and "IPEX_FHIR_MAX_PAGES" in response.get_json()["error"]


FAILURES: list[tuple[str, dict[str, Any], str]] = [
    ("401", {"status": 401, "json": {"resourceType": "OperationOutcome"}}, "401"),
    ("403", {"status": 403}, "403"),
    ("404", {"status": 404}, "404"),
    ("410", {"status": 410}, "410"),
    ("500", {"status": 500}, "500"),
    ("503", {"status": 503}, "503"),
    ("302-not-followed", {"status": 302,
                          "headers": {"Location": "https://attacker.example.net/x"}}, "302"),
    ("timeout", {"body": requests.ReadTimeout("slow")}, "did not answer"),
    ("connect-timeout", {"body": requests.ConnectTimeout("slow")}, "did not answer"),
    ("refused", {"body": requests.ConnectionError("refused")}, "could not be reached"),
    ("not-json", {"body": "<html>login</html>"}, "not JSON"),
    ("not-a-bundle", {"json": {"resourceType": "Patient", "id": "x"}}, "other than a Bundle"),
]


@pytest.mark.parametrize("key", ["patient", "conditions"])
@pytest.mark.parametrize(("answer", "says"), [f[1:] for f in FAILURES],
                         ids=[f[0] for f in FAILURES])
def test_each_failure_is_412_and_never_leaks_the_token(
        cds: FlaskClient, clock: FixedClock, caplog: pytest.LogCaptureFixture,
        key: str, answer: dict[str, Any], says: str) -> None:
    pid, patient, by_key = classic(clock)
    prefetch: dict[str, Any] = {"patient": patient, "observations": None, "orders": None,
                                "conditions": searchset(by_key["conditions"])}
    del prefetch[key]
    url = f"{FHIR_SERVER}/Patient/{pid}" if key == "patient" else f"{FHIR_SERVER}/Condition"
    if key == "patient" and says == "other than a Bundle":
        answer, says = {"json": {"resourceType": "Condition"}}, "returned something else"
    with caplog.at_level(logging.DEBUG), responses.RequestsMock() as ehr:
        ehr.get(url, **answer)
        response = cds.post(SERVICE, json=hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN,
                                                    prefetch=prefetch))
        assert_sent_with_token(ehr)
        assert len(ehr.calls) == 1  # no retry, no redirect followed
    assert response.status_code == 412
    error = response.get_json()["error"]
    assert key in error and says in error
    assert TOKEN not in error and TOKEN not in caplog.text and "Bearer" not in caplog.text
    assert pid not in caplog.text


def test_over_budget_is_412_within_the_budget(tmp_path: Path,
                                              clock: FixedClock) -> None:
    client = cds_app(tmp_path, clock=clock, cds_budget_s=0.5, fhir_timeout_s=3.0).test_client()
    pid, patient, by_key = classic(clock)

    def slow(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.2)
        return 200, {}, '{"resourceType": "Bundle", "type": "searchset"}'

    with responses.RequestsMock(assert_all_requests_are_fired=False) as ehr:
        for kind in KINDS.values():
            ehr.add_callback(responses.GET, f"{FHIR_SERVER}/{kind}", callback=slow)
        started = time.monotonic()
        response = client.post(SERVICE, json=hook_call(
            pid, fhir_server=FHIR_SERVER, token=TOKEN, prefetch={"patient": patient}))
        elapsed = time.monotonic() - started
        assert len(ehr.calls) == 3  # the third started inside the budget and ended after it
    assert response.status_code == 412
    assert "IPEX_CDS_BUDGET_S" in response.get_json()["error"]
    assert elapsed < 0.5 + 0.3


def test_resources_about_another_patient_from_the_server_are_ignored(
        cds: FlaskClient, clock: FixedClock) -> None:
    pid, patient, by_key = classic(clock)
    others = [dict(r, subject={"reference": "Patient/other"}) for r in by_key["conditions"]]
    with responses.RequestsMock() as ehr:
        serve_record(ehr, pid, patient, {"conditions": others, "observations": [],
                                         "orders": []})
        response = cds.post(SERVICE, json=hook_call(pid, fhir_server=FHIR_SERVER, token=TOKEN))
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_without_fhir_authorization_fetches_send_no_authorization(
        cds: FlaskClient, clock: FixedClock) -> None:
    pid, patient, by_key = classic(clock)
    with responses.RequestsMock() as ehr:
        serve_record(ehr, pid, patient, by_key)
        response = cds.post(SERVICE, json=hook_call(pid, fhir_server=FHIR_SERVER))
        assert all("Authorization" not in c.request.headers for c in ehr.calls)
    assert len(response.get_json()["cards"]) == 1
