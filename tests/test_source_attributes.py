"""The source attributes (45 CFR 170.315(b)(11)(iv)(A)): generated once, served twice, linked.

Both FHIR validators check the generated Library in ``test_conformance`` (it is a
published resource); here: it and the page hold every attribute, in the regulation's
order, from the rule table and nowhere else; the card links to the page and every
RiskAssessment names the Library it came from.
"""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.config import default_profiles_dir
from service.profiles import ProfilesError, load_profiles

from .cds_support import CLASSIC, SERVICE, cds_app, classic_call
from .conftest import load_json
from .fixed_clock import FixedClock
from .scenarios import load_scenario

RULES = default_profiles_dir() / "rules" / "ipex-screening-rules.json"
ATTRIBUTES = [
    "Bibliographic citation of the intervention (clinical research or guideline)",
    "Developer of the intervention (translation from clinical research or guideline)",
    "Funding source of the technical implementation for the intervention's development",
    "Release and, if applicable, revision dates of the intervention or reference source",
    "Use of race", "Use of ethnicity", "Use of language", "Use of sexual orientation",
    "Use of gender identity", "Use of sex", "Use of date of birth",
    "Use of social determinants of health", "Use of health status assessments",
]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.links: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links += [v for k, v in attrs if k == "href" and v]


def test_the_library_holds_every_attribute_from_the_rule_table(client: FlaskClient) -> None:
    publication = load_json(RULES)["publication"]
    library = client.get("/fhir/Library/ipex-screening-rules").get_json()
    section = library["description"].split("## Source attributes (45 CFR 170.315(b)(11)(iv)(A))")
    assert len(section) == 2
    for number, name in enumerate(ATTRIBUTES, start=1):
        assert f"\n{number}. **{name}**: " in section[1], name
    citations = [a for a in library["relatedArtifact"] if a["type"] == "citation"]
    assert [(a["citation"], a["url"]) for a in citations] == [
        (c["citation"], c["url"]) for c in publication["citations"]]
    assert library["author"][0]["name"] == publication["developer"]["name"]
    assert library["date"] == load_json(RULES)["date"]
    assert [a["display"].split(",")[0] for a in library["relatedArtifact"]
            if a["type"] == "predecessor"] == ["Version 1.0.0"]
    inputs = {r["type"]: r["mustSupport"] for r in library["dataRequirement"]}
    assert {"birthDate", "gender", "extension"} <= set(inputs["Patient"])
    assert "10. **Use of sex**: Input." in section[1]
    assert "11. **Use of date of birth**: Input." in section[1]
    for element in ("race", "ethnicity", "language", "sexual orientation"):
        assert f"**Use of {element}**: Not used." in section[1]


def test_the_page_says_the_same_and_that_sex_and_date_of_birth_are_inputs(
        client: FlaskClient) -> None:
    response = client.get("/source-attributes")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src" not in policy and "default-src 'none'" in policy
    page = _Text()
    page.feed(response.get_data(as_text=True))
    text = " ".join(" ".join(page.parts).split())
    for name in ATTRIBUTES:
        assert name in text, name
    assert "Sex and date of birth are inputs." in text
    assert "IPEX is X-linked" in text
    publication = load_json(RULES)["publication"]
    for citation in publication["citations"]:
        assert citation["url"] in page.links
    assert publication["funding"] in text
    assert "fhir/Library/ipex-screening-rules" in page.links


def test_a_changed_rule_table_changes_both(tmp_path: Path) -> None:
    profiles = tmp_path / "fhir_profiles"
    _copy_profiles(profiles)
    rules = load_json(RULES)
    rules["publication"]["funding"] = "A grant from the Example Foundation (EF-123)."
    (profiles / "rules" / "ipex-screening-rules.json").write_text(json.dumps(rules))
    library = load_profiles(profiles).get("Library", "ipex-screening-rules")
    assert library is not None
    assert "A grant from the Example Foundation (EF-123)." in library["description"]


@pytest.mark.parametrize("change, message", [
    (lambda p: p["dataElements"].pop(), "dataElements"),
    (lambda p: p["revisions"][-1].update(version="9.9.9"), "last revision"),
    (lambda p: p.update(releaseDate="2020-01-01"), "releaseDate"),
])
def test_an_inconsistent_publication_stops_the_start(tmp_path: Path, change: Any,
                                                     message: str) -> None:
    profiles = tmp_path / "fhir_profiles"
    _copy_profiles(profiles)
    rules = copy.deepcopy(load_json(RULES))
    change(rules["publication"])
    (profiles / "rules" / "ipex-screening-rules.json").write_text(json.dumps(rules))
    with pytest.raises(ProfilesError, match=message):
        load_profiles(profiles)


def test_a_hand_written_library_file_is_refused(tmp_path: Path) -> None:
    profiles = tmp_path / "fhir_profiles"
    _copy_profiles(profiles)
    (profiles / "Library").mkdir(exist_ok=True)
    (profiles / "Library" / "ipex-screening-rules.json").write_text(json.dumps(
        {"resourceType": "Library", "id": "ipex-screening-rules",
         "url": "https://ipex-screen.org/fhir/Library/ipex-screening-rules"}))
    with pytest.raises(ProfilesError, match="generated from the rule documents"):
        load_profiles(profiles)


def test_the_card_links_the_source_attributes_and_the_timeline(
        tmp_path: Path, clock: FixedClock) -> None:
    cds = cds_app(tmp_path, clock=clock).test_client()
    (card,) = cds.post(SERVICE, json=classic_call(clock)).get_json()["cards"]
    links = {link["type"]: link for link in card["links"] if "GeneReviews" not in link["label"]}
    assert links["absolute"]["url"] == "http://localhost/source-attributes"
    assert links["smart"]["url"] == "http://localhost/timeline/launch.html"
    assert json.loads(links["smart"]["appContext"]) == {
        "asOf": load_scenario(CLASSIC).as_of.isoformat(), "rulesVersion": "2.0.0", "row": 1}


def test_every_risk_assessment_names_the_library_it_came_from(client: FlaskClient) -> None:
    scenario = load_scenario(CLASSIC)
    assessment = client.post("/fhir/$ipex-screen", json=scenario.bundle).get_json()
    (extension,) = assessment["extension"]
    assert extension["url"] == "http://hl7.org/fhir/StructureDefinition/cqf-library"
    url, version = extension["valueCanonical"].split("|")
    library = client.get("/fhir/Library/" + url.rsplit("/", 1)[-1]).get_json()
    assert (library["url"], library["version"]) == (url, version)


def _copy_profiles(target: Path) -> None:
    import shutil

    shutil.copytree(default_profiles_dir(), target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py"))
