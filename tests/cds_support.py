"""Shared helpers of the CDS Hooks tests: an app, patient-view calls made from a Bundle.

Used by ``test_cds_service``, ``test_cds_fetch``, ``test_cds_loopback``,
``test_cds_feedback`` and ``test_api_auth`` (fixtures on top of them are in conftest).
"""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

from flask import Flask

from service.app import create_app

from .conftest import TESTS
from .fixed_clock import FixedClock
from .jwt_support import FHIR_SERVER
from .scenarios import load_scenario

SERVICE = "/cds-services/ipex-foxp3-screen"
FEEDBACK = SERVICE + "/feedback"
CDS_DATA = TESTS / "data" / "cds"
SCENARIOS = TESTS / "data" / "scenarios"
CLASSIC = SCENARIOS / "classic-infant-boy-triad.json"


def cds_app(tmp_path: Path, *, clock: FixedClock | None = None, **settings: Any) -> Flask:
    """The app with CDS auth off (unless ``settings`` say otherwise), on ``clock``."""
    config: dict[str, Any] = {"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "off"}
    config.update(settings)
    clock = clock or FixedClock()
    app = create_app(config, today=clock.today, now=clock.now)
    app.config["TESTING"] = True
    return app


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{FHIR_SERVER}/{r['resourceType']}/{r.get('id', i)}",
                       "resource": r, "search": {"mode": "match"}}
                      for i, r in enumerate(resources)]}


def split_record(bundle: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, list[Any]]]:
    """(patient id, Patient, resources by prefetch key) for a bundle's first patient.

    As a FHIR server's search would give them: references to the patient rewritten
    to ``Patient/{id}``; resources of other patients left in (the service must drop them).
    """
    entries = [e for e in bundle["entry"] if isinstance(e.get("resource"), dict)]
    patients = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
    first = patients[0]
    patient = copy.deepcopy(first["resource"])
    pid = patient.get("id") or re.split("[:/]", first["fullUrl"])[-1]
    patient["id"] = pid
    aliases = {f"Patient/{pid}", first.get("fullUrl")}
    by_key: dict[str, list[Any]] = {"conditions": [], "observations": [], "orders": []}
    keys = {"Condition": "conditions", "Observation": "observations",
            "ServiceRequest": "orders"}
    for entry in entries:
        resource = copy.deepcopy(entry["resource"])
        key = keys.get(resource["resourceType"])
        if key is None:
            continue
        subject = (resource.get("subject") or {}).get("reference")
        if subject in aliases or (subject is None and len(patients) == 1):
            resource["subject"] = {"reference": f"Patient/{pid}"}
        by_key[key].append(resource)
    return pid, patient, by_key


def hook_call(pid: str, *, prefetch: dict[str, Any] | None = None,
              fhir_server: str | None = None, token: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                            "context": {"userId": "Practitioner/77", "patientId": pid}}
    if fhir_server:
        call["fhirServer"] = fhir_server
    if token:
        call["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read",
                                     "subject": "ipex-screen"}
    if prefetch is not None:
        call["prefetch"] = prefetch
    return call


def prefetch_call(bundle: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A patient-view call with full prefetch for the bundle's first patient."""
    pid, patient, by_key = split_record(bundle)
    prefetch = {"patient": patient, **{k: searchset(v) for k, v in by_key.items()}}
    return hook_call(pid, prefetch=prefetch, **options)


def without_uuids(card: dict[str, Any]) -> dict[str, Any]:
    found = copy.deepcopy(card)
    found.pop("uuid")
    for suggestion in found.get("suggestions", []):
        suggestion.pop("uuid")
    return found


def classic_call(clock: FixedClock) -> dict[str, Any]:
    """The classic infant-boy triad as a full-prefetch call, ``clock`` set to its date."""
    scenario = load_scenario(CLASSIC)
    clock.set_today(scenario.as_of)
    return prefetch_call(scenario.bundle)
