"""JSON log lines: one per request, with what an operator needs and nothing a patient owns."""

from __future__ import annotations

import io
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request

from service.app import create_app
from service.observability.hooks import note_hook_instance
from service.observability.logs import configure_logging

from .log_capture import JsonLog

HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def _app(tmp_path: Path, **settings: Any) -> Flask:
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "off",
                      **settings})
    app.config["TESTING"] = True
    return app


def _with_cds_like_routes(app: Flask) -> Flask:
    """Stand-ins for a CDS service: one parses with get_json, one notes hookInstance."""

    @app.post("/test-only/parsed/<patient_id>")
    def parsed(patient_id: str) -> Response:
        body = request.get_json()
        return jsonify({"cards": [], "seen": body.get("context", {}).get("patientId")})

    @app.post("/test-only/noted")
    def noted() -> Response:
        note_hook_instance(json.loads(request.get_data())["hookInstance"])
        return jsonify({"cards": []})

    @app.post("/test-only/unparsed")
    def unparsed() -> Response:
        return jsonify({"cards": []})

    return app


def test_one_json_line_per_request_with_method_path_status_duration_and_id(
        tmp_path: Path, json_log: JsonLog) -> None:
    client = _app(tmp_path).test_client()
    response = client.get("/fhir/StructureDefinition/x-42?_format=json&name=Jane",
                          headers={"X-Request-ID": "gw-7f3a.19:2"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "gw-7f3a.19:2"
    (line,) = json_log.requests()
    assert line["method"] == "GET"
    assert line["path"] == "/fhir/<resource_type>/<resource_id>"
    assert line["status"] == 404
    assert line["request_id"] == "gw-7f3a.19:2"
    assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 10_000
    assert line["level"] == "INFO" and line["msg"] == "request"
    assert line["ts"].endswith("Z") and isinstance(line["pid"], int)
    assert "hookInstance" not in line
    raw = json_log.stream.getvalue()
    assert "x-42" not in raw and "Jane" not in raw and "_format" not in raw


@pytest.mark.parametrize("header", [
    None, "", "has space", "x" * 101, "semi;colon", "new\nline", "ünï",
    "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwcyJ9.c2ln",
])
def test_an_unusable_request_id_is_replaced_by_a_new_uuid(
        tmp_path: Path, json_log: JsonLog, header: str | None) -> None:
    client = _app(tmp_path).test_client()
    headers = {} if header is None else {"X-Request-ID": header}
    try:
        response = client.get("/fhir/metadata", headers=headers)
    except ValueError:  # Werkzeug's test client refuses a newline in a header
        assert header is not None and "\n" in header
        return
    given = response.headers["X-Request-ID"]
    assert str(uuid.UUID(given)) == given and given != header
    (line,) = json_log.requests()
    assert line["request_id"] == given
    if header:
        assert header not in json_log.stream.getvalue()


def test_a_path_no_rule_matches_is_logged_by_its_first_segment_only(
        tmp_path: Path, json_log: JsonLog) -> None:
    client = _app(tmp_path).test_client()
    assert client.get("/Patient/8812-44/$everything").status_code == 404
    assert client.get("/4471-0021").status_code == 404
    paths = [line["path"] for line in json_log.requests()]
    assert paths == ["/Patient/*", "<unmatched>"]
    assert "8812-44" not in json_log.stream.getvalue()
    assert "4471-0021" not in json_log.stream.getvalue()


def test_hook_instance_is_logged_when_the_cds_service_notes_it_and_never_read_from_a_body(
        tmp_path: Path, json_log: JsonLog) -> None:
    client = _with_cds_like_routes(_app(tmp_path)).test_client()
    call = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE,
            "context": {"patientId": "pt-31337", "userId": "Practitioner/9"},
            "prefetch": {"patient": None}}
    # The real service notes it (its answer here is 412: the prefetch holds no Patient).
    assert client.post("/cds-services/ipex-foxp3-screen", json=call).status_code == 412
    assert client.post("/test-only/noted", json=call).status_code == 200
    assert client.post("/test-only/parsed/pt-31337", json=call).status_code == 200
    assert client.post("/test-only/unparsed", json=call).status_code == 200
    service, noted, parsed, unparsed = json_log.requests()
    assert service["hookInstance"] == HOOK_INSTANCE and noted["hookInstance"] == HOOK_INSTANCE
    assert service["path"] == "/cds-services/ipex-foxp3-screen"
    assert parsed["path"] == "/test-only/parsed/<patient_id>"
    # Nobody noted these: the log reads no body, parsed by the handler or not.
    assert "hookInstance" not in parsed and "hookInstance" not in unparsed
    assert "pt-31337" not in json_log.stream.getvalue()


def test_a_hook_instance_that_is_not_a_plain_token_is_not_logged(
        tmp_path: Path, json_log: JsonLog) -> None:
    client = _with_cds_like_routes(_app(tmp_path)).test_client()
    for hook_instance in ("Jane Doe, DOB 2019-02-03", {"nested": "object"}, "x" * 500):
        call = {"hook": "patient-view", "hookInstance": hook_instance}
        assert client.post("/test-only/noted", json=call).status_code == 200
        assert client.post("/cds-services/ipex-foxp3-screen", json=call).status_code == 400
    assert len(json_log.requests()) == 6
    assert all("hookInstance" not in line for line in json_log.requests())
    assert "Jane Doe" not in json_log.stream.getvalue()


def test_log_level_is_respected(tmp_path: Path, json_log: JsonLog) -> None:
    quiet = _app(tmp_path, log_level="WARNING").test_client()
    assert quiet.get("/fhir/metadata").status_code == 200
    assert json_log.requests() == []

    normal = _app(tmp_path, log_level="INFO").test_client()
    assert normal.get("/healthz").status_code == 200  # probes log at DEBUG
    assert normal.get("/fhir/metadata").status_code == 200
    assert [line["path"] for line in json_log.requests()] == ["/fhir/metadata"]

    verbose = _app(tmp_path, log_level="DEBUG").test_client()
    assert verbose.get("/healthz").status_code == 200
    last = json_log.requests()[-1]
    assert (last["path"], last["level"]) == ("/healthz", "DEBUG")


def test_an_exception_is_logged_by_type_and_stack_never_its_message(json_log: JsonLog) -> None:
    log = logging.getLogger("ipex_screen.test")
    name = "Jane " + "Doe"  # data, as a patient's would be: not in the source line
    try:
        raise ValueError(f"birthDate: input_value='{name} 2019-02-03' is not a date")
    except ValueError:
        log.exception("screening failed")
    (line,) = [x for x in json_log.lines() if x["logger"] == "ipex_screen.test"]
    assert line["exc_type"] == "ValueError"
    assert "test_logging.py" in line["stack"]
    assert "Jane Doe" not in json.dumps(line)


def test_configure_logging_writes_json_lines_at_the_level_given() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(level="warning", stream=stream)
        logging.getLogger("ipex_screen.x").info("hidden")
        logging.getLogger("ipex_screen.x").warning("shown %s", "here")
        configure_logging(level="DEBUG", stream=stream)
        # urllib3 quotes each URL it fetches, query string and all: never below INFO.
        logging.getLogger("urllib3.connectionpool").debug("GET /Observation?patient=77")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["level"], line["msg"]) for line in lines] == [("WARNING", "shown here")]
