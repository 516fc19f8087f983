"""The shipped ValueSets mean what the rules say, over the whole ICD-10-CM tabular.

Each ICD-10-CM family root the rules name is expanded with ``simple-icd-10-cm`` (the
CMS tabular): every code below it must land in the expected category, except the
excludes each ValueSet documents. A broken rules file or ValueSet stops the start
with a message naming the file.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service.app import create_app
from service.config import default_profiles_dir
from service.profiles import Profiles, ProfilesError, load_profiles
from service.screening import RuleSet

CM = "http://hl7.org/fhir/sid/icd-10-cm"
CM_OID = "urn:oid:2.16.840.1.113883.6.90"
WHO = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
VS = "https://ipex-screen.org/fhir/ValueSet/"


def _icd10cm() -> ModuleType:
    # simple-icd-10-cm reads its data with a deprecated importlib.resources call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

        simple_icd_10_cm.get_description("E10")  # loads the tabular inside the filter
    module: ModuleType = simple_icd_10_cm
    return module


TABULAR = _icd10cm()

# What a code means, as the rules say: (kind, category or ValueSet id), or None for nothing.
Outcome = tuple[str, str] | None


def criterion(category: str, value_set: str) -> Outcome:
    return ("evidence", f"{category} via {value_set}")


def exclusion(value_set: str) -> Outcome:
    return ("exclusion", value_set)


ENT = criterion("ENT", "ipex-enteropathy")
NOT_ENT = exclusion("ipex-not-enteropathy")
NOT_ENDO = exclusion("ipex-not-endocrine")
FOOD = criterion("food-allergy", "ipex-sf-food-allergy")
AUTOANTIBODY = criterion("autoantibody", "ipex-sf-autoantibody")

# Each ICD-10-CM family root named by the rules or a ValueSet, what every code below it
# means, and the documented exceptions (a code, or a code followed by "*" for its family).
FAMILIES: dict[str, tuple[Outcome, dict[str, Outcome]]] = {
    # Presymptomatic type 1 diabetes (islet autoimmunity, no clinical diabetes) is the
    # autoantibody supporting feature, not diabetes.
    "E10": (criterion("ENDO-DM", "ipex-diabetes"), {"E10.A*": AUTOANTIBODY}),
    "E10.A": (AUTOANTIBODY, {}),
    "E11": (criterion("ENDO-DM", "ipex-diabetes-other"), {}),
    "E13": (criterion("ENDO-DM", "ipex-diabetes-other"), {}),
    "E03": (criterion("ENDO-THY", "ipex-hypothyroidism"),
            {"E03.0": NOT_ENDO, "E03.1": NOT_ENDO, "E03.2": NOT_ENDO}),
    "E05": (criterion("ENDO-THY", "ipex-thyroid-autoimmune"), {"E05.4*": None}),
    "L20": (criterion("DERM", "ipex-dermatitis"), {}),
    "K90": (ENT, {"K90.0": NOT_ENT, "K90.3": None, "K90.81": None, "K90.82*": None,
                  "K90.9": criterion("ENT", "ipex-enteropathy-malabsorption")}),
    # Very-early-onset IBD: ENT only with onset before 24 months (the source's limit).
    "K50": (criterion("ENT", "ipex-enteropathy-veo-ibd"), {}),
    "K51": (criterion("ENT", "ipex-enteropathy-veo-ibd"), {}),
    # Explaining causes only (rules section 2): they are no criterion or feature.
    "E84": (None, {}),
    "E73": (None, {}),
    "E74.3": (None, {}),
    "Z91.011": (FOOD, {}),
    "K52.2": (FOOD, {}),
    "Z91.01": (FOOD, {}),
    "T78.0": (FOOD, {}),
    "T78.1": (FOOD, {}),
    "R73": (NOT_ENDO, {}),
    **{f"A0{i}": (NOT_ENT, {}) for i in range(10)},
    "D59.1": (criterion("autoimmune-cytopenia", "ipex-sf-autoimmune-cytopenia"), {}),
    "D72.1": (criterion("eosinophilia", "ipex-sf-eosinophilia"), {}),
    "L63": (criterion("alopecia", "ipex-sf-alopecia"), {}),
    "M08": (criterion("arthritis", "ipex-sf-arthritis"), {}),
    "J84": (criterion("interstitial-lung-disease", "ipex-sf-interstitial-lung-disease"), {}),
    "R59": (criterion("lymphoproliferation", "ipex-sf-lymphoproliferation"), {}),
    **{f"N0{i}": (criterion("nephropathy", "ipex-sf-nephropathy"), {}) for i in range(6)},
    **{f"E4{i}": (criterion("failure-to-thrive", "ipex-sf-failure-to-thrive"), {})
       for i in range(7)},
}


def meaning(rules: RuleSet, system: str, code: str) -> Outcome:
    hit = rules.classify(system, code)
    if hit is not None:
        return ("evidence", f"{hit.category.id} via {hit.source.value_set.url.removeprefix(VS)}")
    excluded = rules.exclusion(system, code)
    if excluded is not None:
        return ("exclusion", excluded.value_set.url.removeprefix(VS))
    return None


def expected(code: str, default: Outcome, exceptions: dict[str, Outcome]) -> Outcome:
    for pattern, outcome in exceptions.items():
        if code == pattern or (pattern.endswith("*") and code.startswith(pattern[:-1])):
            return outcome
    return default


# Each ICD-10-CM family root of an explaining cause (rules section 2, explained diarrhea):
# every code below it is that cause, whatever else it is.
CAUSE_FAMILIES: dict[str, str] = {
    "E84": "celiac-or-cystic-fibrosis",
    "E73": "disaccharidase-intolerance",
    "E74.3": "disaccharidase-intolerance",
    "K52.2": "food-protein-allergy",
    "Z91.011": "food-protein-allergy",
    **{f"A0{i}": "intestinal-infection" for i in range(9)},
    "E05": "hyperthyroidism",
}


def _shipped_families() -> set[str]:
    roots: set[str] = set()
    for path in (default_profiles_dir() / "ValueSet").glob("*.json"):
        for part in json.loads(path.read_text(encoding="utf-8"))["compose"]["include"]:
            if part["system"] == CM:
                roots.update(f["value"] for f in part.get("filter", []))
    return roots


def test_every_shipped_icd10cm_family_has_an_expectation_here() -> None:
    assert _shipped_families() <= set(FAMILIES), "a new family root needs its row in FAMILIES"


@pytest.mark.parametrize("root", sorted(FAMILIES))
def test_every_tabular_code_below_a_family_root_means_what_the_rules_say(
    root: str, profiles: Profiles
) -> None:
    default, exceptions = FAMILIES[root]
    codes = [root, *TABULAR.get_descendants(root)]
    assert len(codes) > 1 or TABULAR.is_leaf(root), f"{root} is not in the tabular"
    wrong = {}
    for code in codes:
        want = expected(code, default, exceptions)
        for system, sent in ((CM, code), (CM, code.replace(".", "")), (CM_OID, code)):
            got = meaning(profiles.rules, system, sent)
            if got != want:
                wrong[f"{system}|{sent}"] = (got, want)
    assert not wrong, f"{len(wrong)} codes below {root} mean the wrong thing: {wrong}"


@pytest.mark.parametrize("root", sorted(CAUSE_FAMILIES))
def test_every_tabular_code_below_a_cause_root_is_that_cause(
    root: str, profiles: Profiles
) -> None:
    codes = [root, *TABULAR.get_descendants(root)]
    assert len(codes) > 1 or TABULAR.is_leaf(root), f"{root} is not in the tabular"
    for code in codes:
        for system, sent in ((CM, code), (CM, code.replace(".", "")), (CM_OID, code)):
            causes = [c.id for c in profiles.rules.causes(system, sent)]
            assert causes == [CAUSE_FAMILIES[root]], (system, sent, causes)


@pytest.mark.parametrize("code", ["A09", "K90.9", "K52.9", "R19.7", "K50.90", "E10.9", "K90.89"])
def test_presumed_infectious_and_nonspecific_codes_explain_nothing(
    code: str, profiles: Profiles
) -> None:
    assert profiles.rules.causes(CM, code) == ()


def test_celiac_disease_is_a_cause_and_never_ent(profiles: Profiles) -> None:
    for system, code in ((CM, "K90.0"), (WHO, "K90.0"), (SNOMED, "396331005")):
        assert [c.id for c in profiles.rules.causes(system, code)] == ["celiac-or-cystic-fibrosis"]
        assert meaning(profiles.rules, system, code) == NOT_ENT


def test_every_documented_exception_is_a_real_code() -> None:
    for root, (_, exceptions) in FAMILIES.items():
        for pattern in exceptions:
            code = pattern.rstrip("*")
            assert TABULAR.is_valid_item(code) and TABULAR.is_descendant(code, root), pattern


def test_every_valueset_exclude_is_documented_in_its_description() -> None:
    for path in sorted((default_profiles_dir() / "ValueSet").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for part in doc["compose"].get("exclude", []):
            named = [c["code"] for c in part.get("concept", [])]
            named += [f["value"] for f in part.get("filter", [])]
            for code in named:
                assert code in doc["description"], f"{path.name}: exclude {code} is undocumented"


@pytest.mark.parametrize("system", [CM, CM_OID, WHO])
def test_allergic_and_dietetic_gastroenteritis_k52_2x_never_counts_as_ent(
    system: str, profiles: Profiles
) -> None:
    codes = ["K52.2", *TABULAR.get_descendants("K52.2")] if system != WHO else ["K52.2"]
    for code in codes:
        for sent in (code, code.replace(".", "")):
            hit = profiles.rules.classify(system, sent)
            assert hit is not None and hit.category.id == "food-allergy", (system, sent)


def test_ipex_724276006_is_a_diagnosis_and_never_diabetes(profiles: Profiles) -> None:
    rules = profiles.rules
    assert rules.is_ipex_diagnosis(SNOMED, "724276006")
    assert rules.classify(SNOMED, "724276006") is None
    holders = [url for url, vs in rules.value_sets.items() if vs.contains(SNOMED, "724276006")]
    assert holders == [f"{VS}ipex-diagnosis"]


@pytest.mark.parametrize("code", ["D84.89", "D89.89", "E31.0", "D84.9", "D89.9"])
def test_icd10cm_near_misses_for_ipex_do_not_suppress(code: str, profiles: Profiles) -> None:
    assert not profiles.rules.is_ipex_diagnosis(CM, code)
    assert meaning(profiles.rules, CM, code) is None


@pytest.mark.parametrize(("system", "code"), [
    ("http://www.orpha.net", "ORPHA:37042"), ("http://www.orpha.net", "37042"),
    ("http://www.omim.org", "304790"), ("http://www.omim.org", "MIM:304790"),
    (SNOMED, "724276006"), ("urn:oid:2.16.840.1.113883.6.96", "724276006"),
])
def test_every_form_of_the_ipex_diagnosis_suppresses(
    system: str, code: str, profiles: Profiles
) -> None:
    assert profiles.rules.is_ipex_diagnosis(system, code)


# --- a broken rule file stops the start ------------------------------------------------------


def _copy_profiles(tmp_path: Path) -> Path:
    target = tmp_path / "fhir_profiles"
    shutil.copytree(default_profiles_dir(), target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _add_code_to_food_allergy(doc: dict[str, Any]) -> None:
    doc["compose"]["include"].append({"system": CM, "concept": [{"code": "L20.9"}]})


def _unknown_value_set(doc: dict[str, Any]) -> None:
    doc["criteria"][0]["evidence"][0]["valueSet"] = f"{VS}ipex-no-such-value-set"


def _snomed_is_a(doc: dict[str, Any]) -> None:
    doc["compose"]["include"].append({"system": SNOMED, "filter": [
        {"property": "concept", "op": "is-a", "value": "43116000"}]})


def _drop_celiac_exclude(doc: dict[str, Any]) -> None:
    for part in doc["compose"]["exclude"]:
        part["concept"] = [c for c in part.get("concept", []) if c["code"] != "K90.0"]


def _last_row_not_low(doc: dict[str, Any]) -> None:
    doc["tiers"] = doc["tiers"][:-1]


def _wrong_id(doc: dict[str, Any]) -> None:
    doc["id"] = "ipex-eczema"


RULES = "rules/ipex-screening-rules.json"
BREAKAGES: dict[str, tuple[str, Callable[[dict[str, Any]], None] | None, list[str]]] = {
    "code-in-two-categories": ("ValueSet/ipex-sf-food-allergy.json", _add_code_to_food_allergy,
                               ["one code, one meaning", "L20.9", "ipex-sf-food-allergy",
                                "ipex-dermatitis"]),
    "unknown-valueset-url": (RULES, _unknown_value_set,
                             [RULES, "unknown ValueSet", "ipex-no-such-value-set"]),
    "unsupported-filter": ("ValueSet/ipex-dermatitis.json", _snomed_is_a,
                           ["ipex-dermatitis", "is-a filters are only supported for ICD"]),
    "excluded-code-still-counts": ("ValueSet/ipex-enteropathy.json", _drop_celiac_exclude,
                                   ["K90.0", "ipex-not-enteropathy", "still counts for ENT"]),
    "no-final-low-row": (RULES, _last_row_not_low, [RULES, "last row must be 'low'"]),
    "stored-under-another-name": ("ValueSet/ipex-dermatitis.json", _wrong_id,
                                  ["ValueSet/ipex-dermatitis.json", "must be stored as"]),
    "invalid-json-valueset": ("ValueSet/ipex-diabetes.json", None,
                              ["ValueSet/ipex-diabetes.json", "not valid JSON"]),
    "invalid-json-rules": (RULES, None, [RULES, "not valid JSON"]),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_a_broken_profile_stops_the_start_with_a_clear_message(
    name: str, tmp_path: Path
) -> None:
    relative, change, fragments = BREAKAGES[name]
    directory = _copy_profiles(tmp_path)
    load_profiles(directory)  # the untouched copy loads
    target = directory / relative
    if change is None:
        target.write_text(target.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    else:
        _edit(target, change)
    with pytest.raises(ProfilesError) as raised:
        load_profiles(directory)
    for fragment in fragments:
        assert fragment in str(raised.value), str(raised.value)
    with pytest.raises(ProfilesError):
        create_app({"profiles_dir": str(directory), "state_db": str(tmp_path / "s.sqlite3"),
                    "cds_auth": "off"})


def test_every_suggested_order_suppresses_the_next_card(profiles: Profiles) -> None:
    """An accepted card's own draft order (its text is the test name) must not bring the
    card back: every test name the rules can suggest is recognised as the IPEX workup."""
    rules = profiles.rules
    for kind, variants in rules.recommendations.items():
        for variant, recommendation in variants.items():
            assert rules.names_ordered_test([recommendation.test_name]), (kind, variant)
