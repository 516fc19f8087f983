"""Input limits (size, depth, entries, media type) and the security headers on every answer."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import ConfigError, load_settings
from service.edge.errors import BadRequest, PayloadTooLarge
from service.edge.headers import SECURITY_HEADERS
from service.edge.limits import check_json_limits
from tests.conftest import SCENARIOS, load_json

OPERATION = "/fhir/$ipex-screen"
BUNDLE = load_json(SCENARIOS / "classic-infant-boy-triad.json")["bundle"]


def _nested(depth: int) -> Any:
    node: Any = {"resourceType": "Bundle", "type": "collection"}
    for _ in range(depth - 1):
        node = {"a": node}
    return node


def _app(tmp_path: Path, **settings: Any) -> Flask:
    app = create_app({"state_db": str(tmp_path / "s.sqlite3"), "cds_auth": "off", **settings})
    app.config["TESTING"] = True
    return app


def _outcome(response: Any, status: int) -> str:
    assert response.status_code == status
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["diagnostics"])


# --- the checks themselves -----------------------------------------------------------


def test_depth_at_the_cap_passes_and_one_more_is_400() -> None:
    check_json_limits(_nested(10), max_depth=10, max_entries=10)
    with pytest.raises(BadRequest, match="deeper than 10"):
        check_json_limits(_nested(11), max_depth=10, max_entries=10)
    with pytest.raises(BadRequest):
        check_json_limits([[[[]]]], max_depth=3, max_entries=10)


def test_entries_are_summed_over_every_bundle_in_the_document() -> None:
    inner = {"resourceType": "Bundle", "entry": [{}] * 3}
    wrapped = {"resourceType": "Parameters",
               "parameter": [{"name": "bundle", "resource": inner}]}
    check_json_limits(wrapped, max_depth=10, max_entries=3)
    prefetch = {"prefetch": {"a": inner, "b": inner}}
    with pytest.raises(PayloadTooLarge, match="more than 5"):
        check_json_limits(prefetch, max_depth=10, max_entries=5)


def test_a_very_deep_document_is_checked_without_recursion() -> None:
    with pytest.raises(BadRequest):
        check_json_limits(_nested(50_000), max_depth=64, max_entries=10)


# --- through the FHIR operation -------------------------------------------------------


def _deep_in_an_unread_field(depth: int) -> dict[str, Any]:
    bundle = json.loads(json.dumps(BUNDLE))
    node: Any = "x"
    for _ in range(depth):
        node = {"extension": [node]}
    bundle["entry"][1]["resource"]["note"] = [node]
    return bundle


def test_deep_json_in_a_field_never_read_is_screened_around(client: FlaskClient) -> None:
    """The lenient reading is iterative and reads fields at fixed places: nesting it
    never reads costs nothing, so it is not walked (a fifth of a CDS call)."""
    response = client.post(OPERATION, json=_deep_in_an_unread_field(200))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_too_deep_json_gets_400_where_something_recurses(client: FlaskClient) -> None:
    strict = client.post(OPERATION, json=_deep_in_an_unread_field(70),
                         headers={"Prefer": "handling=strict"})
    assert "deeper than 64" in _outcome(strict, 400)
    feedback = client.post("/cds-services/ipex-foxp3-screen/feedback",
                           json={"feedback": [{"card": "x", "deep": _nested(70)}]})
    assert feedback.status_code == 400
    assert "deeper than 64" in feedback.get_json()["error"]


def test_json_deeper_than_the_parser_allows_gets_400(client: FlaskClient) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = client.post(OPERATION, data=body, content_type="application/fhir+json")
    _outcome(response, 400)


def test_too_many_entries_gets_413(tmp_path: Path) -> None:
    client = _app(tmp_path, max_entries=5).test_client()
    bundle = dict(BUNDLE, entry=BUNDLE["entry"] + [{"resource": {"resourceType": "Basic"}}] * 5)
    assert "more than 5" in _outcome(client.post(OPERATION, json=bundle), 413)
    assert client.post(OPERATION, json=dict(BUNDLE, entry=BUNDLE["entry"][:5])).status_code == 200


def test_oversized_body_gets_413_with_and_without_content_length(tmp_path: Path) -> None:
    client = _app(tmp_path, max_body_mb=0.01).test_client()  # 10 KiB
    big = json.dumps(dict(BUNDLE, padding="x" * 20_000)).encode()
    _outcome(client.post(OPERATION, data=big, content_type="application/fhir+json"), 413)

    # Chunked upload: no Content-Length, so the limit is enforced while reading.
    response = client.post(OPERATION, input_stream=io.BytesIO(big),
                           content_type="application/fhir+json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.request.content_length is None
    _outcome(response, 413)


def test_a_body_shorter_than_its_content_length_gets_400(client: FlaskClient) -> None:
    body = json.dumps(BUNDLE).encode()
    response = client.post(OPERATION, data=body, content_type="application/fhir+json",
                           environ_overrides={"CONTENT_LENGTH": str(len(body) + 100)})
    assert response.request.content_length == len(body) + 100
    assert f"ended after {len(body)} of the {len(body) + 100} bytes" in _outcome(response, 400)


def test_a_body_that_would_parse_into_too_many_containers_gets_413(client: FlaskClient
                                                                   ) -> None:
    """21 million empty lists in 64 MB would take 1.8 GB to parse: refused unparsed."""
    from service.edge.limits import MAX_JSON_CONTAINERS

    many = b"[" + b"[]," * MAX_JSON_CONTAINERS + b"[]]"
    response = client.post(OPERATION, data=many, content_type="application/fhir+json")
    assert "JSON objects and arrays" in _outcome(response, 413)
    # The densest legal record the service answers stays under the limit.
    from bench.adversarial import observations

    dense = json.dumps(observations()).encode()
    assert dense.count(b"{") + dense.count(b"[") < MAX_JSON_CONTAINERS


def test_the_default_body_limit_admits_a_50_mb_bundle() -> None:
    assert load_settings({}).max_body_mb * 1024 * 1024 >= 50 * 1024 * 1024


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"\xff\xfe", b"[1,]", b"NaN"])
def test_malformed_json_gets_400(client: FlaskClient, body: bytes) -> None:
    response = client.post(OPERATION, data=body, content_type="application/fhir+json")
    assert "not valid JSON" in _outcome(response, 400)


@pytest.mark.parametrize("media", ["text/plain", "application/xml", "application/fhir+xml",
                                   "multipart/form-data; boundary=x"])
def test_wrong_media_type_gets_415(client: FlaskClient, media: str) -> None:
    _outcome(client.post(OPERATION, data=json.dumps(BUNDLE), content_type=media), 415)


def test_limits_come_from_the_environment() -> None:
    settings = load_settings({"IPEX_MAX_JSON_DEPTH": "32", "IPEX_MAX_ENTRIES": "500"})
    assert (settings.max_json_depth, settings.max_entries) == (32, 500)
    with pytest.raises(ConfigError, match="IPEX_MAX_ENTRIES"):
        load_settings({"IPEX_MAX_ENTRIES": "lots"})


# --- security headers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/fhir/metadata", 200),
        ("GET", "/fhir/ValueSet/nowhere", 404),
        ("GET", "/openapi.json", 200),
        ("POST", OPERATION, 415),
        ("GET", OPERATION, 405),
        ("GET", "/no/such/path", 404),
    ],
)
def test_every_answer_carries_the_security_headers(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_a_screening_answer_carries_the_security_headers(client: FlaskClient) -> None:
    response = client.post(OPERATION, json=BUNDLE)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
