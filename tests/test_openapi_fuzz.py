"""The OpenAPI document is complete and truthful: schemathesis drives the live app with it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis
import pytest
import responses
import schemathesis
from flask import Flask
from schemathesis import checks
from schemathesis.generation.case import Case

from service.app import create_app
from service.edge.openapi import openapi_document, registered_paths


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    state = tmp_path_factory.mktemp("fuzz") / "state.sqlite3"
    return create_app({"state_db": str(state), "cds_auth": "off", "max_entries": 50})


def test_every_route_of_the_app_is_documented(live_app: Flask) -> None:
    document = live_app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.0")
    for path, methods in registered_paths(live_app).items():
        assert path in document["paths"], f"{path} is not in /openapi.json"
        assert methods <= set(document["paths"][path]), f"{path}: {methods} not all documented"


def test_the_document_promises_only_what_the_app_serves(live_app: Flask) -> None:
    routes = registered_paths(live_app)
    for path, operations in openapi_document(live_app)["paths"].items():
        assert set(operations) <= routes[path]


def test_every_fhir_error_is_an_operation_outcome_in_the_document(live_app: Flask) -> None:
    operation = openapi_document(live_app)["paths"]["/fhir/$ipex-screen"]["post"]
    for status in ("400", "401", "413", "415", "422"):
        schema = operation["responses"][status]["content"]["application/fhir+json"]["schema"]
        assert schema["$ref"].endswith("/OperationOutcome")


def test_the_public_base_url_is_the_documented_server(tmp_path: Path) -> None:
    app = create_app({"state_db": str(tmp_path / "s.sqlite3"), "cds_auth": "off",
                      "public_base_url": "https://ipex.example.org"})
    document = app.test_client().get("/openapi.json").get_json()
    assert document["servers"] == [{"url": "https://ipex.example.org"}]


# Built at import: schemathesis makes one test per operation at collection time.
_STATE = tempfile.TemporaryDirectory(prefix="ipex-fuzz-")
FUZZED_APP = create_app({"state_db": str(Path(_STATE.name) / "state.sqlite3"),
                         "cds_auth": "off", "max_entries": 50})
schema = schemathesis.openapi.from_wsgi("/openapi.json", FUZZED_APP)


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
    derandomize=True,
)
def test_no_input_gives_a_5xx_or_an_undocumented_answer(case: Case) -> None:
    # No outbound call leaves the test: a fuzzed fhirServer meets a refused connection.
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        case.call_and_validate(
            checks=[
                checks.not_a_server_error,
                checks.status_code_conformance,
                checks.content_type_conformance,
                checks.response_schema_conformance,
            ]
        )
