"""No log line holds patient data, an access token or a JWT, whatever the service is sent.

The whole scenario corpus (each patient given a name, an MRN, a phone number and an
address first, since the scenarios carry only birth dates) and three Synthea bundles go
through the app with every logger at DEBUG: as sent, with a broken entry that carries a
name (an error path), with a bearer JWT in ``Authorization`` and tokens in the query
string, and through the issuer check. The forbidden strings are read from the very
bundles sent.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app

from .conftest import scenario_files, synthea_files
from .jwt_support import es384_signer, jwks, write_issuers
from .log_capture import JsonLog
from .scenarios import load_scenario

PUBLIC = "https://ipex.example.org"
OPERATION = "/fhir/$ipex-screen"
CDS_SERVICE = "/cds-services/ipex-foxp3-screen"
FHIR_SERVER = "https://ehr.example.org/fhir"
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
SYNTHEA = sorted(synthea_files(), key=lambda p: p.stat().st_size)[:3]


def _b64(value: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


FAKE_JWT = ".".join([
    _b64({"alg": "RS384", "typ": "JWT", "kid": "ehr-key-1"}),
    _b64({"iss": "https://ehr.example.org", "sub": "clinician-77", "aud": PUBLIC + OPERATION,
          "jti": "9a0c3b8e-0d0e-4c52-8b8f-6d7c1e6a3f11", "exp": 4102444800}),
    "c2lnbmF0dXJlLW5vdC1yZWFsLWJ1dC1sb25nLWVub3VnaC10by1sb29rLXJlYWw",
])
FAKE_ACCESS_TOKEN = "at-5b1e0c52f0a34f7d9c1b7e2a8d4f6c3e"
TOKENS = (FAKE_JWT, *FAKE_JWT.split("."), FAKE_ACCESS_TOKEN)


def _patients(bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            yield resource


def with_demographics(bundle: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """The bundle with a name, MRN, phone and address on each Patient that lacks them."""
    bundle = copy.deepcopy(bundle)
    for n, patient in enumerate(_patients(bundle)):
        tag = f"{seed:03d}{n}"
        patient.setdefault("name", [{"family": f"Quillfeather{tag}",
                                     "given": [f"Ottoline{tag}", f"Marguerite{tag}"],
                                     "text": f"Ottoline Quillfeather{tag}"}])
        patient.setdefault("identifier", [{"system": "http://hospital.example.org/mrn",
                                           "value": f"MRN{tag}7731"}])
        patient.setdefault("telecom", [{"system": "phone", "value": f"+1-555-01{tag}"}])
        patient.setdefault("address", [{"line": [f"{tag} Larkspur Crescent"],
                                        "city": "Brindlewood", "postalCode": f"9{tag}"}])
    return bundle


def forbidden_strings(bundle: Mapping[str, Any]) -> set[str]:
    """Every name part, identifier value, birth date, phone/email and address of its Patients."""
    found: set[str] = set()
    for patient in _patients(bundle):
        for name in patient.get("name") or []:
            found.update([name.get("text", ""), name.get("family", ""), *name.get("given", [])])
        found.update(i.get("value", "") for i in patient.get("identifier") or [])
        found.update(t.get("value", "") for t in patient.get("telecom") or [])
        for address in patient.get("address") or []:
            found.update([*address.get("line", []), address.get("text", ""),
                          address.get("postalCode", "")])
        found.add(patient.get("birthDate", ""))
    return {s for s in found if isinstance(s, str) and len(s) >= 4}


def broken(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with each Patient's birth date replaced by its name: invalid FHIR."""
    bundle = copy.deepcopy(bundle)
    for patient in _patients(bundle):
        names = patient.get("name") or [{}]
        patient["birthDate"] = f"{names[0].get('family', 'x')} {patient.get('birthDate', '')}"
    return bundle


def _app(tmp_path: Path, **settings: Any) -> Flask:
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "off",
                      "log_level": "DEBUG", **settings})
    app.config["TESTING"] = True
    return app


def _inputs() -> list[tuple[str, dict[str, Any], str | None]]:
    """(name, bundle with demographics, asOf) for every scenario and three Synthea bundles."""
    cases: list[tuple[str, dict[str, Any], str | None]] = []
    for seed, path in enumerate(scenario_files()):
        scenario = load_scenario(path)
        cases.append((path.stem, with_demographics(scenario.bundle, seed=seed),
                      scenario.as_of.isoformat()))
    for path in SYNTHEA:
        cases.append((path.stem, json.loads(path.read_text(encoding="utf-8")), None))
    return cases


def _body(bundle: dict[str, Any], as_of: str | None) -> dict[str, Any]:
    if as_of is None:
        return bundle
    return {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": bundle}, {"name": "asOf", "valueDate": as_of}]}


def assert_clean(lines: Iterable[str], forbidden: set[str]) -> None:
    patterns = [(s, re.compile(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])"))
                for s in sorted(forbidden | set(TOKENS))]
    for line in lines:
        json.loads(line)  # every line is one JSON object
        assert not JWT_SHAPE.search(line), f"a JWT in the log: {line[:300]}"
        assert "Bearer" not in line, line[:300]
        for text, pattern in patterns:
            assert not pattern.search(line), f"{text!r} in the log: {line[:300]}"


def test_the_forbidden_strings_are_found_in_the_inputs() -> None:
    for name, bundle, _ in _inputs():
        strings = forbidden_strings(bundle)
        # A name part, an identifier and a birth date at least: else the check is empty.
        assert len(strings) >= 3, name


def test_fhir_operation_logs_no_patient_data_or_token(tmp_path: Path,
                                                       json_log: JsonLog) -> None:
    client = _app(tmp_path).test_client()
    forbidden: set[str] = set()
    calls = 0
    for name, bundle, as_of in _inputs():
        forbidden |= forbidden_strings(bundle)
        patient_data = min(forbidden_strings(bundle))
        headers = {"Authorization": f"Bearer {FAKE_JWT}"}
        query = f"?patient={patient_data}&access_token={FAKE_ACCESS_TOKEN}&jwt={FAKE_JWT}"
        ok = client.post(OPERATION + query, json=_body(bundle, as_of), headers=headers)
        assert ok.status_code == 200, name
        strict = {**headers, "Prefer": "handling=strict"}
        bad = client.post(OPERATION, json=_body(broken(bundle), as_of), headers=strict)
        assert bad.status_code == 422, name
        calls += 2
    lines = json_log.raw_lines()
    requests_logged = [line for line in lines if '"logger":"ipex_screen.request"' in line]
    assert len(requests_logged) == calls
    assert_clean(lines, forbidden)


def test_issuer_check_logs_no_token(tmp_path: Path, json_log: JsonLog) -> None:
    signer = es384_signer()
    issuers = write_issuers(tmp_path / "api-issuers.json", inline=jwks(signer))
    client = _app(tmp_path, api_issuers_file=str(issuers), public_base_url=PUBLIC).test_client()
    _, bundle, as_of = _inputs()[0]
    valid = signer.token(aud=PUBLIC + OPERATION)
    tampered = valid[:-6] + ("AAAAAA" if not valid.endswith("AAAAAA") else "BBBBBB")
    wrong_aud = signer.token(aud="https://elsewhere.example.org/fhir/$ipex-screen")
    statuses = [client.post(OPERATION, json=_body(bundle, as_of),
                            headers={"Authorization": f"Bearer {token}"}).status_code
                for token in (valid, tampered, wrong_aud, FAKE_JWT)]
    assert statuses == [200, 401, 401, 401]
    lines = json_log.raw_lines()
    assert len(lines) >= 4
    forbidden = forbidden_strings(bundle) | {valid, tampered, wrong_aud}
    forbidden |= {part for token in (valid, tampered, wrong_aud) for part in token.split(".")}
    assert_clean(lines, forbidden)


def _cds_call(bundle: dict[str, Any], *, with_prefetch: bool) -> dict[str, Any]:
    patient = next(_patients(bundle))

    def searchset(kind: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": e["resource"]} for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") == kind]}

    call: dict[str, Any] = {
        "hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": FHIR_SERVER,
        "fhirAuthorization": {"access_token": FAKE_ACCESS_TOKEN, "token_type": "Bearer",
                              "expires_in": 300, "scope": "patient/*.read",
                              "subject": "ipex-screen"},
        "context": {"userId": "Practitioner/77", "patientId": patient.get("id", "p")},
    }
    if with_prefetch:
        call["prefetch"] = {"patient": patient, "conditions": searchset("Condition"),
                            "observations": searchset("Observation"),
                            "orders": searchset("ServiceRequest")}
    return call


def _has_cds_service(client: FlaskClient) -> bool:
    app = client.application
    return any(rule.rule.startswith(CDS_SERVICE) for rule in app.url_map.iter_rules())


def test_cds_hooks_calls_log_no_patient_data_or_token(tmp_path: Path,
                                                      json_log: JsonLog) -> None:
    client = _app(tmp_path).test_client()
    if not _has_cds_service(client):
        pytest.skip("the CDS Hooks service is not registered in this build")
    forbidden: set[str] = set()
    headers = {"Authorization": f"Bearer {FAKE_JWT}"}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as ehr:
        # Every fetch fails: the service must answer (412) without logging the token.
        ehr.add(responses.GET, re.compile(re.escape(FHIR_SERVER) + r"/.*"), status=500)
        for name, bundle, _ in _inputs():
            if next(_patients(bundle), None) is None:
                continue
            forbidden |= forbidden_strings(bundle)
            answered = client.post(CDS_SERVICE, json=_cds_call(bundle, with_prefetch=True),
                                   headers=headers)
            assert answered.status_code == 200, name
            fetched = client.post(CDS_SERVICE, json=_cds_call(bundle, with_prefetch=False),
                                  headers=headers)
            assert fetched.status_code == 412, name
    assert_clean(json_log.raw_lines(), forbidden)
