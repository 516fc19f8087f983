"""The OpenAPI document is complete and truthful: schemathesis drives the live app with it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import orjson
import pytest
import responses
import schemathesis
from flask import Flask
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case

from service.app import create_app
from service.cds import schemas as cds_schemas
from service.edge import openapi_schemas
from service.edge.openapi import openapi_document, registered_paths
from service.screening.record import ACCEPTED_BUNDLE_TYPES
from service.serving.answers import server_answer


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


@pytest.mark.parametrize("status", [408, 414, 431, 501, 503])
def test_the_servers_own_answers_are_documented_as_it_gives_them(
        live_app: Flask, status: int) -> None:
    """Answers the HTTP server gives before or instead of the app (a slow body, a long
    request line, a stuck worker) are documented on every operation, in the form and
    media type ``server_answer`` really sends for that path."""
    document = openapi_document(live_app)
    components = _json_schema(document["components"])
    for path, operations in document["paths"].items():
        if path == "/readyz":
            continue  # its 503 is the readiness answer (never a 60 s request)
        concrete = path.replace("{type}", "ValueSet").replace("{id}", "x").replace(
            "{name}", "index.html")
        # A request line too long is refused before its path is trusted (channel.py).
        _, headers, body = server_answer(status, "refused",
                                         path=None if status == 414 else concrete)
        media = dict(headers)["Content-Type"]
        for method, operation in operations.items():
            answer = operation["responses"].get(str(status))
            assert answer is not None, f"{method} {path} does not document {status}"
            schema = answer["content"][media]["schema"]
            validator = jsonschema_rs.validator_for({**schema, "components": components})
            assert validator.is_valid(orjson.loads(body)), f"{method} {path} {status}"


def test_the_public_base_url_is_the_documented_server(tmp_path: Path) -> None:
    app = create_app({"state_db": str(tmp_path / "s.sqlite3"), "cds_auth": "off",
                      "public_base_url": "https://ipex.example.org"})
    document = app.test_client().get("/openapi.json").get_json()
    assert document["servers"] == [{"url": "https://ipex.example.org"}]


# Built at import: schemathesis makes one test per operation at collection time.
_STATE = tempfile.TemporaryDirectory(prefix="ipex-fuzz-")
FUZZED_APP = create_app({"state_db": str(Path(_STATE.name) / "state.sqlite3"),
                         "cds_auth": "off", "max_entries": 50})
# What a valid request may still get, besides 2xx: 401/404 (the spec's defaults), 412 (the
# CDS call's FHIR server cannot be reached: none can, here), 422 (valid FHIR, no Patient).
ACCEPTED_STATUSES = ["2xx", "401", "404", "412", "422"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES}}})
schema = schemathesis.openapi.from_wsgi("/openapi.json", FUZZED_APP, config=CONFIG)


def _about_a_resource_in_the_record(response: Response) -> bool:
    """A 400 naming an entry's resource: its FHIR validity, which the FHIR spec defines."""
    if response.status_code != 400:
        return False
    body = response.json()
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        where = (body["issue"][0].get("expression") or [""])[0]
        text = body["issue"][0].get("diagnostics", "")
    else:
        where, text = "", body.get("error", "") if isinstance(body, dict) else ""
    return any(part.startswith("Bundle.entry[") and ".resource" in part
               for part in (where, text.split(":", 1)[0], text.split(" ", 1)[0]))


@schemathesis.check
def valid_requests_are_accepted(ctx: checks.CheckContext, response: Response,
                                case: Case) -> bool | None:
    """schemathesis' positive_data_acceptance, but for FHIR validity of a record's resources."""
    if _about_a_resource_in_the_record(response):
        return None
    return checks.positive_data_acceptance(ctx, response, case)


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
                valid_requests_are_accepted,
            ]
        )


# --- the document is as strict as the validation ------------------------------------------


def _json_schema(value: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema (``anyOf`` with null)."""
    if isinstance(value, list):
        return [_json_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    converted = {k: _json_schema(v) for k, v in value.items() if k != "nullable"}
    if value.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _validator(name: str) -> Any:
    components = _json_schema(openapi_document(FUZZED_APP)["components"])
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}",
                                        "components": components})


FEEDBACK_ITEM = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}
HOOK_CALL = {"hook": "patient-view", "hookInstance": "i-1", "context": {"patientId": "p-1"},
             "prefetch": {"patient": None}}


@pytest.mark.parametrize(("name", "path", "body", "status"), [
    ("Feedback", "/cds-services/ipex-foxp3-screen/feedback", {"feedback": []}, 400),
    ("Feedback", "/cds-services/ipex-foxp3-screen/feedback",
     {"feedback": [FEEDBACK_ITEM] * 101}, 413),
    ("Feedback", "/cds-services/ipex-foxp3-screen/feedback",
     {"feedback": [{**FEEDBACK_ITEM, "card": "c" * 129}]}, 400),
    ("Feedback", "/cds-services/ipex-foxp3-screen/feedback",
     {"feedback": [{**FEEDBACK_ITEM, "outcomeTimestamp": "0001-01-01T00:00:00+14:00"}]}, 400),
    ("Feedback", "/cds-services/ipex-foxp3-screen/feedback",
     {"feedback": [{**FEEDBACK_ITEM, "outcome": "accepted"}]}, 400),
    ("HookRequest", "/cds-services/ipex-foxp3-screen", {**HOOK_CALL, "fhirServer": ""}, 400),
    ("HookRequest", "/cds-services/ipex-foxp3-screen", {**HOOK_CALL, "hook": "order-sign"}, 400),
    ("HookRequest", "/cds-services/ipex-foxp3-screen",
     {**HOOK_CALL, "context": {"patientId": "a/b"}}, 400),
    ("HookRequest", "/cds-services/ipex-foxp3-screen",
     {**HOOK_CALL, "fhirAuthorization": {"access_token": "t", "token_type": "Bearer",
                                         "expires_in": 60, "scope": "s", "subject": "x"}}, 400),
    # Past 2**53 a JSON reader may keep only a float: refused, and documented as refused.
    ("HookRequest", "/cds-services/ipex-foxp3-screen",
     {**HOOK_CALL, "fhirServer": "https://ehr.example.org/fhir",
      "fhirAuthorization": {"access_token": "t", "token_type": "Bearer",
                            "expires_in": 10**30, "scope": "s", "subject": "x"}}, 400),
    ("HookRequest", "/cds-services/ipex-foxp3-screen",
     {**HOOK_CALL, "fhirServer": "https://ehr.example.org/fhir",
      "fhirAuthorization": {"access_token": "t", "token_type": "Bearer",
                            "expires_in": -10**30, "scope": "s", "subject": "x"}}, 400),
    ("ScreenInput", "/fhir/$ipex-screen", {"resourceType": ""}, 400),
    ("ScreenInput", "/fhir/$ipex-screen", {"resourceType": "Bundle", "type": "history"}, 400),
    ("ScreenInput", "/fhir/$ipex-screen", {"resourceType": "Parameters", "parameter": []}, 400),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_what_the_service_refuses_the_document_refuses(
        live_app: Flask, name: str, path: str, body: Any, status: int) -> None:
    assert not _validator(name).is_valid(body), "the document calls it valid"
    assert live_app.test_client().post(path, json=body).status_code == status


@pytest.mark.parametrize(("name", "body"), [
    ("Feedback", {"feedback": [FEEDBACK_ITEM] * 100}),
    ("Feedback", {"feedback": [{**FEEDBACK_ITEM, "outcomeTimestamp": "0001-01-01T00:00:00Z"}]}),
    ("HookRequest", {**HOOK_CALL, "fhirServer": "https://ehr.example.org/fhir/R4"}),
    ("ScreenInput", {"resourceType": "Bundle", "type": "collection", "entry": []}),
])
def test_what_the_service_accepts_the_document_accepts(name: str, body: Any) -> None:
    assert _validator(name).is_valid(body)


def test_the_document_has_the_bounds_the_validation_has() -> None:
    assert cds_schemas.FHIR_ID.regex.pattern == (
        r"\A" + openapi_schemas.FHIR_ID_PATTERN.removeprefix("^").removesuffix("$") + r"\Z")
    for name in ("MAX_FEEDBACK_ITEMS", "MAX_ID_CHARS", "MAX_ACCEPTED_SUGGESTIONS",
                 "MAX_URI_CHARS", "MAX_CODE_CHARS", "MAX_COMMENT_CHARS"):
        assert getattr(openapi_schemas, name) == getattr(cds_schemas, name), name
    assert set(openapi_schemas.BUNDLE_TYPES) == set(ACCEPTED_BUNDLE_TYPES)


def test_the_state_store_failures_are_documented(live_app: Flask) -> None:
    paths = openapi_document(live_app)["paths"]
    for path in ("/cds-services/ipex-foxp3-screen", "/cds-services/ipex-foxp3-screen/feedback",
                 "/fhir/$ipex-screen"):
        assert "503" in paths[path]["post"]["responses"], path
    assert paths["/readyz"]["get"]["responses"]["503"]["content"]
