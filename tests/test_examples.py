"""Every file in ``examples/`` screens as ``examples/README.md`` says it does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

EXAMPLES = Path(__file__).parents[1] / "examples"
ROW = re.compile(r"^\| `(?P<file>[\w.-]+)` \| [^|]+ \| (?P<tier>\w+) \| (?P<rule>\d+) \| "
                 r"(?P<recommendation>[^|]+) \|$")


def _documented() -> dict[str, dict[str, str]]:
    rows = {}
    for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match["file"]] = match.groupdict()
    return rows


DOCUMENTED = _documented()


def test_every_example_is_documented_and_every_documented_example_exists() -> None:
    assert set(DOCUMENTED) == {p.name for p in EXAMPLES.glob("*.json")}


@pytest.mark.parametrize("name", sorted(n for n in DOCUMENTED if not n.startswith("cds-")))
def test_each_record_screens_as_documented(name: str, client: FlaskClient) -> None:
    expected = DOCUMENTED[name]
    response = client.post("/fhir/$ipex-screen", data=(EXAMPLES / name).read_bytes(),
                           content_type="application/fhir+json")
    assert response.status_code == 200, response.get_data(as_text=True)
    assessment = response.get_json()
    prediction = assessment["prediction"][0]
    assert prediction["qualitativeRisk"]["coding"][0]["code"] == expected["tier"]
    assert f"by rule {expected['rule']} " in prediction["rationale"]
    recommendation = expected["recommendation"].strip()
    if recommendation.startswith("none"):
        assert "mitigation" not in assessment and assessment["note"]
    else:
        assert assessment["mitigation"].startswith(f"Rule {expected['rule']} (")
        assert "could have changed" not in json.dumps(assessment.get("note", []))


def test_the_cds_request_gets_the_documented_card(client: FlaskClient) -> None:
    expected = DOCUMENTED["cds-patient-view.json"]
    call = json.loads((EXAMPLES / "cds-patient-view.json").read_text(encoding="utf-8"))
    response = client.post("/cds-services/ipex-foxp3-screen", json=call)
    assert response.status_code == 200, response.get_data(as_text=True)
    (card,) = response.get_json()["cards"]
    assert card["indicator"] == "warning" and expected["tier"] == "high"
    test = expected["recommendation"].split(" (")[0]
    assert card["suggestions"][0]["actions"][0]["resource"]["code"]["text"] == test
    assert f"(rule {expected['rule']}:" in card["detail"]
