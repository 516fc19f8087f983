"""``GET /fhir/metadata`` and reads of the conformance resources; 404 for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import default_profiles_dir
from service.profiles import CANONICAL_BASE, load_profiles

from .conftest import load_json
from .fhir_validation import validate_resources

FHIR_JSON = "application/fhir+json"
PROFILES_DIR = default_profiles_dir()
PUBLISHED = sorted(p for p in PROFILES_DIR.glob("*/*.json") if p.parent.name != "rules")
GENERATED = sorted(set(load_profiles(PROFILES_DIR).resources)
                   - {(p.parent.name, p.stem) for p in PUBLISHED})


@pytest.fixture(scope="module")
def fhir_client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    state = tmp_path_factory.mktemp("endpoints") / "state.sqlite3"
    return create_app({"state_db": str(state), "cds_auth": "off"}).test_client()


def test_metadata_returns_the_capability_statement_and_it_validates(
    fhir_client: FlaskClient,
) -> None:
    response = fhir_client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.mimetype == FHIR_JSON
    statement = response.get_json()
    assert statement == load_json(PROFILES_DIR / "CapabilityStatement" / "ipex-screen.json")
    assert (statement["resourceType"], statement["id"]) == ("CapabilityStatement", "ipex-screen")
    assert statement["fhirVersion"] == "4.0.1"
    assert "json" in statement["format"]
    assert validate_resources([statement]) == [[]]


@pytest.mark.parametrize("path", PUBLISHED, ids=[f"{p.parent.name}/{p.stem}" for p in PUBLISHED])
def test_every_conformance_resource_is_readable_at_its_canonical_path(
    fhir_client: FlaskClient, path: Path
) -> None:
    kind, rid = path.parent.name, path.stem
    response = fhir_client.get(f"/fhir/{kind}/{rid}")
    assert response.status_code == 200
    assert response.mimetype == FHIR_JSON
    resource = response.get_json()
    assert resource == load_json(path)
    assert (resource["resourceType"], resource["id"]) == (kind, rid)
    assert resource["url"] == f"{CANONICAL_BASE}{kind}/{rid}", "the canonical URL names the read"


@pytest.mark.parametrize("kind, rid", GENERATED, ids=[f"{k}/{i}" for k, i in GENERATED])
def test_every_generated_resource_is_readable_at_its_canonical_path(
    fhir_client: FlaskClient, kind: str, rid: str
) -> None:
    response = fhir_client.get(f"/fhir/{kind}/{rid}")
    assert response.status_code == 200
    resource = response.get_json()
    assert (resource["resourceType"], resource["id"]) == (kind, rid)
    assert resource["url"] == f"{CANONICAL_BASE}{kind}/{rid}", "the canonical URL names the read"


def test_the_rule_set_library_is_generated() -> None:
    assert ("Library", "ipex-screening-rules") in GENERATED, (
        "the Library is generated from the rule documents, not a file")


def test_the_profile_and_operation_the_statement_names_are_readable(
    fhir_client: FlaskClient,
) -> None:
    statement = fhir_client.get("/fhir/metadata").get_json()
    (rest,) = statement["rest"]
    canonicals = [op["definition"] for op in rest["operation"]]
    canonicals += [p for r in rest["resource"] for p in r.get("supportedProfile", [])]
    assert canonicals
    for canonical in canonicals:
        assert canonical.startswith(CANONICAL_BASE)
        response = fhir_client.get("/fhir/" + canonical.removeprefix(CANONICAL_BASE))
        assert response.status_code == 200, canonical
        assert response.get_json()["url"] == canonical


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/Spaceship/enterprise",
        "/fhir/ValueSet/no-such-value-set",
        "/fhir/StructureDefinition/ipex-risk-assessment.json",
        "/fhir/structuredefinition/ipex-risk-assessment",
        "/fhir/rules/ipex-screening-rules",
        "/fhir/Patient/baby1",
        "/fhir/ValueSet/..%2Frules%2Fipex-screening-rules",
        "/fhir/StructureDefinition",
    ],
)
def test_anything_unknown_is_a_404_operation_outcome(fhir_client: FlaskClient, url: str) -> None:
    response = fhir_client.get(url)
    assert response.status_code == 404
    assert response.mimetype == FHIR_JSON
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert (issue["severity"], issue["code"]) == ("error", "not-found")
    assert issue["diagnostics"].strip()
