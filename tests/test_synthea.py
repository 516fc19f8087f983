"""Every Synthea bundle in ``../shared/data/synthea`` (none has IPEX) screens low with no error.

Each bundle goes through the core as of a fixed date and over HTTP exactly as a
hospital system sends it (the raw Bundle, ``application/fhir+json``, as of today).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.profiles import Profiles
from service.screening import screen_bundle

from .conftest import SYNTHEA, load_json, synthea_files

FILES = synthea_files()
AS_OF = dt.date(2026, 1, 1)
RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"


def test_the_synthea_corpus_is_there() -> None:
    assert len(FILES) == 40, f"expected the 40 Synthea bundles in {SYNTHEA}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem.split("_")[0] + "_" + p.stem.split("_")[1]
                                             for p in FILES])
def test_synthea_bundle_screens_low(path: Path, profiles: Profiles, client: FlaskClient) -> None:
    raw = path.read_bytes()
    bundle = load_json(path)
    patients = [e["resource"]["id"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "Patient"]

    results = screen_bundle(bundle, profiles.rules, as_of=AS_OF)
    assert [r.patient.reference for r in results] == [f"Patient/{p}" for p in patients]
    for result in results:
        assert result.tier == "low", f"{result.patient.reference}: {result.findings.criteria}"
        assert result.recommendation is None
        assert not result.suppressed

    response = client.post("/fhir/$ipex-screen", data=raw, content_type="application/fhir+json")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/fhir+json"
    assessment = response.get_json()
    assert assessment["resourceType"] == "RiskAssessment"
    assert assessment["subject"] == {"reference": f"Patient/{patients[0]}"}
    coding = assessment["prediction"][0]["qualitativeRisk"]["coding"][0]
    assert (coding["system"], coding["code"]) == (RISK_SYSTEM, "low")
    assert "mitigation" not in assessment
