"""The FHIR operation behind ``IPEX_API_ISSUERS_FILE``: who gets in, who gets 401, the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from tests.cds_support import cds_app, classic_call
from tests.conftest import SCENARIOS, load_json
from tests.fixed_clock import FixedClock
from tests.jwt_support import (
    FHIR_SERVER,
    HOSTILE_JKU,
    JWKS_URI,
    Signer,
    es384_signer,
    hs256_with_public_key,
    jwks,
    unsigned_token,
    write_issuers,
)

PUBLIC = "https://ipex.example.org"
OPERATION = "/fhir/$ipex-screen"
AUD = PUBLIC + OPERATION
BUNDLE = load_json(SCENARIOS / "classic-infant-boy-triad.json")["bundle"]


@pytest.fixture()
def jwks_server(es384: Signer, rs384: Signer) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URI, json=jwks(es384, rs384))
        mock.get(HOSTILE_JKU, json=jwks(es384_signer(kid="ehr-es384")))
        yield mock


def _app(tmp_path: Path, **settings: Any) -> Flask:
    issuers = write_issuers(tmp_path / "api-issuers.json")
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "off",
                      "api_issuers_file": str(issuers), **settings})
    app.config["TESTING"] = True
    return app


@pytest.fixture()
def client(tmp_path: Path) -> FlaskClient:
    return _app(tmp_path, public_base_url=PUBLIC).test_client()


def _screen(client: FlaskClient, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(OPERATION, json=BUNDLE, headers=headers)


def test_a_correctly_signed_es384_token_is_accepted(
    client: FlaskClient, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    response = _screen(client, es384.token(aud=AUD))
    assert response.status_code == 200
    assert response.get_json()["resourceType"] == "RiskAssessment"


def test_rs384_with_aud_array_is_accepted(
    client: FlaskClient, rs384: Signer, jwks_server: responses.RequestsMock
) -> None:
    assert _screen(client, rs384.token(aud=[AUD, PUBLIC + "/other"])).status_code == 200


def _attacks(es384: Signer, rs384: Signer) -> dict[str, str]:
    return {
        "forged": es384_signer(kid=es384.kid).token(aud=AUD),
        "expired": es384.token(aud=AUD, issued_offset_s=-900, lifetime_s=300),
        "not-yet-valid": es384.token(aud=AUD, nbf=2**31 - 1),
        "wrong-aud": es384.token(aud=PUBLIC + "/cds-services/ipex-foxp3-screen"),
        "aud-array-without-us": es384.token(aud=["https://elsewhere.example.org/fhir"]),
        "alg-none": unsigned_token(aud=AUD, kid=es384.kid),
        "hs256-public-key": hs256_with_public_key(rs384, aud=AUD),
        "foreign-jku": es384.token(aud=AUD, headers={"jku": HOSTILE_JKU}),
        "unknown-kid": es384.token(aud=AUD, kid="not-published"),
        "unknown-iss": es384.token(aud=AUD, iss="https://rogue.example.org"),
        "no-jti": es384.token(aud=AUD, drop=("jti",)),
    }


ATTACKS = ["forged", "expired", "not-yet-valid", "wrong-aud", "aud-array-without-us",
           "alg-none", "hs256-public-key", "foreign-jku", "unknown-kid", "unknown-iss", "no-jti"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_gets_a_401_operation_outcome_and_no_token_in_the_log(
    client: FlaskClient, es384: Signer, rs384: Signer, jwks_server: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture, attack: str,
) -> None:
    token = _attacks(es384, rs384)[attack]
    with caplog.at_level(logging.DEBUG):
        response = _screen(client, token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    assert "JWT rejected" in caplog.text
    for part in token.split("."):
        if len(part) > 8:
            assert part not in caplog.text
    assert not [c for c in jwks_server.calls if c.request.url == HOSTILE_JKU]


def test_a_replayed_token_gets_401_the_second_time(
    client: FlaskClient, es384: Signer, jwks_server: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = es384.token(aud=AUD)
    assert _screen(client, token).status_code == 200
    with caplog.at_level(logging.INFO):
        assert _screen(client, token).status_code == 401
    assert "replay" in caplog.text and token not in caplog.text


def test_replay_is_refused_by_another_worker_sharing_the_state_db(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    worker_a = _app(tmp_path, public_base_url=PUBLIC).test_client()
    worker_b = _app(tmp_path, public_base_url=PUBLIC).test_client()
    token = es384.token(aud=AUD)
    assert _screen(worker_a, token).status_code == 200
    assert _screen(worker_b, token).status_code == 401


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
def test_no_bearer_token_gets_401(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.post(OPERATION, json=BUNDLE, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_auth_is_checked_before_the_body_is_read(client: FlaskClient) -> None:
    response = client.post(OPERATION, data=b"not json", content_type="text/plain")
    assert response.status_code == 401


def test_without_a_public_base_url_the_aud_is_the_url_the_request_came_to(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    client = _app(tmp_path).test_client()
    assert _screen(client, es384.token(aud=AUD)).status_code == 401  # came to localhost
    assert _screen(client, es384.token(aud="http://localhost" + OPERATION)).status_code == 200


def test_the_rest_of_fhir_and_operations_stay_open(client: FlaskClient) -> None:
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_without_an_api_issuers_file_the_operation_is_open(tmp_path: Path) -> None:
    app = create_app({"state_db": str(tmp_path / "s.sqlite3"), "cds_auth": "off"})
    response = app.test_client().post(OPERATION, json=BUNDLE,
                                      headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 200


# --- the CDS Hooks guard (the seam service/cds/auth.py calls) ---------------------------


def _cds_guarded_app(tmp_path: Path, **issuer: Any) -> Flask:
    """The app with a CDS issuers file, plus a probe route standing where the hook is."""
    from flask import request

    from service.security.guard import verify_cds_call
    from service.security.jwt_verify import TokenRejected

    issuers = write_issuers(tmp_path / "cds-issuers.json", **issuer)
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "jwt",
                      "cds_issuers_file": str(issuers), "public_base_url": PUBLIC})

    @app.post("/probe/cds-services/ipex-foxp3-screen")
    def probe() -> tuple[str, int]:
        body = request.get_json(silent=True) or {}
        try:
            client = verify_cds_call(request, fhir_server=body.get("fhirServer"))
        except TokenRejected:
            return "", 401
        return client.issuer.iss, 200

    return app


def test_cds_guard_checks_the_path_called_and_the_fhir_server(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    client = _cds_guarded_app(tmp_path, fhir_servers=["https://ehr.example.org/fhir"]).test_client()
    path = "/probe/cds-services/ipex-foxp3-screen"
    good = {"fhirServer": "https://ehr.example.org/fhir/R4"}
    ok = client.post(path, json=good,
                     headers={"Authorization": f"Bearer {es384.token(aud=PUBLIC + path)}"})
    assert ok.status_code == 200
    hostile = {"fhirServer": "https://attacker.example.net/fhir"}
    refused = client.post(path, json=hostile,
                          headers={"Authorization": f"Bearer {es384.token(aud=PUBLIC + path)}"})
    assert refused.status_code == 401 and refused.data == b""
    wrong_aud = es384.token(aud=PUBLIC + "/cds-services/ipex-foxp3-screen")
    assert client.post(path, json=good, headers={"Authorization": f"Bearer {wrong_aud}"}
                       ).status_code == 401


# --- the real CDS Hooks endpoints in jwt mode ------------------------------------------

CDS_SERVICE = "/cds-services/ipex-foxp3-screen"


@pytest.fixture()
def cds_client(tmp_path: Path, clock: FixedClock) -> FlaskClient:
    issuers = write_issuers(tmp_path / "cds-issuers.json", fhir_servers=[FHIR_SERVER])
    return cds_app(tmp_path, clock=clock, cds_auth=None, cds_issuers_file=str(issuers),
                   public_base_url=PUBLIC, bind_host="0.0.0.0").test_client()


def _cds_call(clock: FixedClock) -> dict[str, Any]:
    call = classic_call(clock)
    call["fhirServer"] = FHIR_SERVER
    return call


def _cds_attacks(es384: Signer, rs384: Signer) -> dict[str, str]:
    aud = PUBLIC + CDS_SERVICE
    return {
        "forged": es384_signer(kid=es384.kid).token(aud=aud),
        "expired": es384.token(aud=aud, issued_offset_s=-900, lifetime_s=300),
        "wrong-aud": es384.token(aud=PUBLIC + "/cds-services"),
        "aud-array-without-us": es384.token(aud=[PUBLIC + OPERATION]),
        "alg-none": unsigned_token(aud=aud, kid=es384.kid),
        "hs256-public-key": hs256_with_public_key(rs384, aud=aud),
        "foreign-jku": es384.token(aud=aud, headers={"jku": HOSTILE_JKU}),
        "unknown-iss": es384.token(aud=aud, iss="https://rogue.example.org"),
    }


def test_cds_es384_accepted_then_its_replay_refused(
    cds_client: FlaskClient, es384: Signer, jwks_server: responses.RequestsMock,
    clock: FixedClock,
) -> None:
    call = _cds_call(clock)
    token = es384.token(aud=PUBLIC + CDS_SERVICE)
    accepted = cds_client.post(CDS_SERVICE, json=call, headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200 and accepted.get_json()["cards"]
    replayed = cds_client.post(CDS_SERVICE, json=call,
                               headers={"Authorization": f"Bearer {token}"})
    assert replayed.status_code == 401 and replayed.data == b""


@pytest.mark.parametrize("attack", ["forged", "expired", "wrong-aud", "aud-array-without-us",
                                    "alg-none", "hs256-public-key", "foreign-jku",
                                    "unknown-iss"])
def test_cds_attacks_get_a_bare_401_and_no_token_in_the_log(
    cds_client: FlaskClient, es384: Signer, rs384: Signer,
    jwks_server: responses.RequestsMock, clock: FixedClock,
    caplog: pytest.LogCaptureFixture, attack: str,
) -> None:
    token = _cds_attacks(es384, rs384)[attack]
    with caplog.at_level(logging.DEBUG):
        response = cds_client.post(CDS_SERVICE, json=_cds_call(clock),
                                   headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.data == b""
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "JWT rejected" in caplog.text
    for part in token.split("."):
        if len(part) > 8:
            assert part not in caplog.text
    assert not [c for c in jwks_server.calls if c.request.url == HOSTILE_JKU]


def test_cds_discovery_stays_open_in_jwt_mode(cds_client: FlaskClient) -> None:
    response = cds_client.get("/cds-services")
    assert response.status_code == 200
    assert response.get_json()["services"][0]["id"] == "ipex-foxp3-screen"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
