"""The FHIR validation harness fails on invalid resources and passes valid ones."""

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from . import fhir_validation
from .fhir_validation import ValidatorUnavailableError, assert_valid, validate_resources

Resource = dict[str, Any]

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"


def risk_assessment(**changes: Any) -> Resource:
    resource: Resource = {
        "resourceType": "RiskAssessment",
        "id": "ra-1",
        "status": "final",
        "subject": {"reference": "Patient/x"},
        "occurrenceDateTime": "2025-03-01T10:00:00Z",
        "prediction": [
            {
                "outcome": {"text": "IPEX syndrome"},
                "qualitativeRisk": {"coding": [{"system": RISK_PROBABILITY, "code": "high"}]},
            }
        ],
    }
    resource.update(changes)
    return resource


def service_request(**changes: Any) -> Resource:
    resource: Resource = {
        "resourceType": "ServiceRequest",
        "id": "sr-1",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": "Patient/x"},
        "code": {"text": "FOXP3 gene sequencing"},
        "reasonCode": [{"text": "Suspected IPEX syndrome"}],
    }
    resource.update(changes)
    return resource


OPERATION_OUTCOME: Resource = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Body is not JSON"}],
}

CONFORMANCE: list[Resource] = [
    {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2025-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "implementation": {"description": "IPEX screen", "url": "https://example.org/fhir"},
        "rest": [
            {
                "mode": "server",
                "resource": [{"type": "StructureDefinition", "interaction": [{"code": "read"}]}],
                "operation": [
                    {
                        "name": "ipex-screen",
                        "definition": "https://ipex-screen.org/fhir/OperationDefinition/x",
                    }
                ],
            }
        ],
    },
    {
        "resourceType": "StructureDefinition",
        "id": "ra",
        "url": "https://ipex-screen.org/fhir/StructureDefinition/ra",
        "name": "IpexRiskAssessment",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "RiskAssessment",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/RiskAssessment",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "RiskAssessment.status",
                    "path": "RiskAssessment.status",
                    "fixedCode": "final",
                }
            ]
        },
    },
    {
        "resourceType": "ValueSet",
        "id": "tier",
        "url": "https://ipex-screen.org/fhir/ValueSet/tier",
        "status": "active",
        "compose": {"include": [{"system": RISK_PROBABILITY, "concept": [{"code": "high"}]}]},
    },
    {
        "resourceType": "OperationDefinition",
        "id": "x",
        "url": "https://ipex-screen.org/fhir/OperationDefinition/x",
        "name": "IpexScreen",
        "status": "active",
        "kind": "operation",
        "code": "ipex-screen",
        "system": True,
        "type": False,
        "instance": False,
        "parameter": [{"name": "bundle", "use": "in", "min": 1, "max": "1", "type": "Bundle"}],
    },
    {
        "resourceType": "CodeSystem",
        "id": "criteria",
        "url": "https://ipex-screen.org/fhir/CodeSystem/criteria",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "enteropathy", "display": "Enteropathy"}],
    },
]


def found(issues: list[fhir_validation.ValidationIssue]) -> set[tuple[str, str, str]]:
    return {(i["validator"], i["path"], i["message"]) for i in issues}


def test_valid_risk_assessment_without_probability_passes() -> None:
    # Medplum 4.5.2 reports ras-2 here (no probability); the harness drops only that.
    assert_valid(risk_assessment())


def test_broken_risk_assessment_fails_with_each_validator() -> None:
    broken = risk_assessment(id="bad", status="bogus", note=[{"text": ""}])
    broken["prediction"][0]["probabilityDecimal"] = 150
    [issues] = validate_resources([broken])
    assert found(issues) == {
        ("fhir.js", "RiskAssessment.status", 'Code "bogus" not found in value set'),
        ("medplum", "RiskAssessment.note[0].text", "Missing required property"),
        ("medplum", "RiskAssessment.prediction[0]", "Constraint ras-2 not met: Must be <= 100"),
    }
    with pytest.raises(AssertionError, match=r"3 FHIR validation error\(s\)") as raised:
        assert_valid([OPERATION_OUTCOME, broken])
    assert "#1 RiskAssessment/bad: [fhir.js] RiskAssessment.status" in str(raised.value)


def test_ras2_is_kept_wherever_a_probability_is_present() -> None:
    over = risk_assessment()
    over["prediction"][0]["probabilityDecimal"] = 150
    mixed = risk_assessment()
    mixed["prediction"].append({"outcome": {"text": "other"}, "probabilityDecimal": 150})
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": risk_assessment()}, {"resource": copy.deepcopy(over)}],
    }
    ras2 = "Constraint ras-2 not met: Must be <= 100"
    assert [found(issues) for issues in validate_resources([over, mixed, bundle])] == [
        {("medplum", "RiskAssessment.prediction[0]", ras2)},
        {("medplum", "RiskAssessment.prediction[1]", ras2)},
        {("medplum", "Bundle.entry[1].resource.prediction[0]", ras2)},
    ]


# (changes to a valid RiskAssessment, the validators that report an error on the result)
CATCHES: list[tuple[Resource, set[str]]] = [
    ({"status": "bogus"}, {"fhir.js"}),
    ({"status": None}, {"fhir.js", "medplum"}),
    ({"note": [{"text": ""}]}, {"medplum"}),
    ({"mitigation": " "}, {"medplum"}),
    ({"occurrenceDateTime": "2024-13-45"}, {"medplum"}),
    ({"unknownElement": 1}, {"medplum"}),
    ({"subject": {"reference": "Organization/x"}}, {"fhir.js"}),
    (
        {"prediction": [{"outcome": {"text": "x"}, "probabilityDecimal": "10"}]},
        {"fhir.js", "medplum"},
    ),
    ({"prediction": [{"outcome": {"text": "x"}, "probabilityDecimal": 10}]}, set()),
]


@pytest.fixture(scope="module")
def catches_results() -> list[list[fhir_validation.ValidationIssue]]:
    resources = [
        {k: v for k, v in risk_assessment(**changes).items() if v is not None}
        for changes, _ in CATCHES
    ]
    return validate_resources(resources)  # one Node process for every case


@pytest.mark.parametrize("case", range(len(CATCHES)), ids=lambda n: str(CATCHES[n][0]))
def test_which_validator_catches_what(
    case: int, catches_results: list[list[fhir_validation.ValidationIssue]]
) -> None:
    issues = catches_results[case]
    assert {issue["validator"] for issue in issues} == CATCHES[case][1], issues


def test_operation_outcome_draft_service_request_and_conformance_pass() -> None:
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}
    assert_valid([OPERATION_OUTCOME, service_request(), parameters, *CONFORMANCE])


def test_service_request_for_an_organization_is_flagged_by_fhir_js() -> None:
    [issues] = validate_resources([service_request(subject={"reference": "Organization/x"})])
    # Medplum reports the wrong reference type only as a warning.
    assert found(issues) == {
        (
            "fhir.js",
            "ServiceRequest.subject",
            'Invalid type for reference {"reference":"Organization/x"}',
        )
    }


def test_errors_in_nested_resources_are_reported() -> None:
    bad = risk_assessment(id="inner", status="bogus")
    params = {"resourceType": "Parameters", "parameter": [{"name": "r", "resource": bad}]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bad}]}
    for issues in validate_resources([params, bundle]):
        assert [i["validator"] for i in issues] == ["fhir.js"]
        assert issues[0]["message"].startswith('Code "bogus" not found in value set (in resource')


def test_non_resources_are_errors_not_passes() -> None:
    junk: list[Any] = [None, {"no": "resourceType"}, {"resourceType": "Nope"}]
    for issues in validate_resources(junk):
        assert {i["validator"] for i in issues} == {"fhir.js", "medplum"}


def test_known_quirk_fhir_js_rejects_a_versioned_reference() -> None:
    # Patient/x/_history/2 is a valid R4 literal reference; FHIR.js 4.12 flags it.
    [issues] = validate_resources([service_request(subject={"reference": "Patient/x/_history/2"})])
    assert [(i["validator"], i["path"]) for i in issues] == [("fhir.js", "ServiceRequest.subject")]


def test_one_call_validates_a_large_batch_in_order() -> None:
    pool = [risk_assessment(), service_request(), OPERATION_OUTCOME, *CONFORMANCE]
    batch = [copy.deepcopy(pool[n % len(pool)]) for n in range(200)]
    batch[137] = risk_assessment(id="odd-one", status="bogus")
    started = time.monotonic()
    results = validate_resources(batch)
    elapsed = time.monotonic() - started
    assert [n for n, issues in enumerate(results) if issues] == [137]
    assert elapsed < 60, f"validating 200 resources took {elapsed:.1f} s"


def test_missing_node_modules_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(fhir_validation, "VALIDATOR_DIR", tmp_path)
    with pytest.raises(ValidatorUnavailableError, match="npm ci --prefix tests/fhir_validators"):
        validate_resources([risk_assessment()])
