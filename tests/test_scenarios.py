"""Every clinical scenario screens as a clinician expects, through the core and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.profiles import Profiles
from service.screening import ScreeningResult, screen_bundle

from .conftest import scenario_files
from .scenarios import Scenario, load_scenario

FILES = scenario_files()


def _check(result: ScreeningResult, expected: dict[str, Any], name: str) -> None:
    where = f"{name} / {expected.get('patient', result.patient.reference)}"
    if "patient" in expected:
        assert result.patient.reference == expected["patient"], where
    assert result.tier == expected["tier"], f"{where}: tier"
    if "row" in expected:
        assert result.decision.row.row == expected["row"], f"{where}: tier row"
    assert sorted(result.findings.criteria) == sorted(expected.get("criteria", [])), (
        f"{where}: criteria"
    )
    if "supporting" in expected:
        assert sorted(result.findings.supporting) == sorted(expected["supporting"]), (
            f"{where}: supporting features"
        )
    key = result.recommendation.key if result.recommendation else None
    assert key == expected.get("recommendation"), f"{where}: recommendation"
    assert result.suppressed == expected.get("suppressed", False), f"{where}: suppressed"
    if "basis" in expected:
        assert sorted(result.basis) == sorted(expected["basis"]), f"{where}: basis"
    if "explained" in expected:
        explained = [e.evidence.reference for e in result.findings.explained]
        assert explained == expected["explained"], f"{where}: explained diarrhea"
    reasons = [n.reason for n in result.findings.not_counted]
    for fragment in expected.get("notCounted", []):
        assert any(fragment in r for r in reasons), f"{where}: no reason like {fragment!r}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_through_the_core(path: Path, profiles: Profiles) -> None:
    scenario = load_scenario(path)
    results = screen_bundle(scenario.bundle, profiles.rules, as_of=scenario.as_of)
    assert len(results) == len(scenario.expect), "one result per patient"
    for result, expected in zip(results, scenario.expect, strict=True):
        _check(result, expected, scenario.name)


def _over_http(client: FlaskClient, scenario: Scenario) -> list[dict[str, Any]]:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "bundle", "resource": scenario.bundle},
            {"name": "asOf", "valueDate": scenario.as_of.isoformat()},
        ],
    }
    response = client.post("/fhir/$ipex-screen", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    payload = response.get_json()
    if payload["resourceType"] == "Bundle":
        return [e["resource"] for e in payload["entry"]]
    return [payload]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_over_http(path: Path, client: FlaskClient) -> None:
    scenario = load_scenario(path)
    assessments = _over_http(client, scenario)
    assert len(assessments) == len(scenario.expect)
    for assessment, expected in zip(assessments, scenario.expect, strict=True):
        prediction = assessment["prediction"][0]
        assert prediction["qualitativeRisk"]["coding"][0]["code"] == expected["tier"]
        recommends = expected.get("recommendation") is not None
        assert ("mitigation" in assessment) == recommends, "mitigation iff testing recommended"
        if expected.get("suppressed"):
            assert assessment.get("note"), "a suppressed patient gets a note saying why"
        for criterion in expected.get("criteria", []):
            assert f"{criterion} (" in prediction["rationale"]
        if "basis" in expected:
            assert sorted(b["reference"] for b in assessment.get("basis", [])) == sorted(
                expected["basis"]
            )
        row = expected.get("row")
        if recommends and row is not None:
            kind = expected["recommendation"].split("/")[0]
            assert assessment["mitigation"].startswith(f"Rule {row} ("), "names the row"
            assert f"recommendation {kind})" in assessment["mitigation"]
            assert f"Tier {expected['tier']} by rule {row} " in prediction["rationale"]
            if not expected["recommendation"].endswith("foxp3-negative"):
                # Every recommendation includes FOXP3 (for a girl: says IPEX is X-linked).
                assert "FOXP3" in assessment["mitigation"]
        if expected.get("explained"):
            assert "Found, not counted (a coded cause explains it)" in prediction["rationale"]
            assert "found, not counted" in assessment["text"]["div"]
