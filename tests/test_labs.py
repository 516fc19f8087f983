"""Lab evidence: units, positivity order, lab-made criteria, evidence text and the loader."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config import default_profiles_dir
from service.profiles import LABS_FILE, Profiles, ProfilesError, load_profiles
from service.screening import RuleSetError, build_rule_set, screen_bundle
from service.screening.explain import explain_result
from service.screening.risk_assessment import risk_assessment
from service.screening.units import UnitConverter, UnitError

from .conftest import SCENARIOS, load_json
from .scenarios import load_scenario

PROFILES = default_profiles_dir()


def _screen(name: str, profiles: Profiles) -> list[Any]:
    scenario = load_scenario(SCENARIOS / f"{name}.json")
    return screen_bundle(scenario.bundle, profiles.rules, as_of=scenario.as_of)


def _effective(name: str, observation_id: str) -> dt.date:
    bundle = load_json(SCENARIOS / f"{name}.json")["bundle"]
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource.get("id") == observation_id:
            return dt.date.fromisoformat(resource["effectiveDateTime"])
    raise KeyError(observation_id)


# --- units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "target", "factor"),
    [
        ("mg/dL", "g/L", 0.01),
        ("mmol/L", "umol/L", 1000.0),
        ("pmol/L", "nmol/L", 0.001),
        ("u[IU]/mL", "m[IU]/L", 1.0),
        ("[IU]/mL", "k[IU]/L", 1.0),
        ("[IU]/L", "k[IU]/L", 0.001),
        ("10*3/uL", "10*9/L", 1.0),
        ("/uL", "10*9/L", 0.001),
        ("/mm3", "10*9/L", 0.001),
        ("g/L", "g/dL", 0.1),
    ],
)
def test_ucum_units_convert_by_their_dimension(unit: str, target: str, factor: float) -> None:
    assert UnitConverter().factor(unit, target) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("unit", "target"),
    [
        ("mg/dL", "mmol/L"),  # mass and molar: only the molar mass bridges them
        ("U/mL", "[IU]/mL"),  # UCUM U is the enzyme unit, not an international unit
        ("bananas", "g/L"),
        ("mg", "mg/dL"),
        ("m" * 60, "m"),
    ],
)
def test_units_that_do_not_convert_raise_unit_error(unit: str, target: str) -> None:
    with pytest.raises(UnitError):
        UnitConverter().factor(unit, target)


def test_hba1c_percent_and_mmol_per_mol_are_not_the_same_unit() -> None:
    converter = UnitConverter()
    # Dimensionally 1 % = 10 mmol/mol, but HbA1c NGSP and IFCC are two scales.
    assert converter.factor("%", "mmol/mol") == pytest.approx(10.0)
    assert not converter.is_same_unit("%", "mmol/mol")
    assert converter.is_same_unit("%{HbA1c}", "%")


def test_lab_rules_are_typed_once_at_load(profiles: Profiles) -> None:
    labs = profiles.rules.lab_rules
    assert labs is not None
    assert labs.read_codes == profiles.rules.observation_codes - {
        profiles.rules.suppression.gene_studied_loinc,
        profiles.rules.suppression.variant_assessment_loinc,
    }
    glucose = labs.by_code["14749-6"]
    assert glucose.molar_mass == pytest.approx(180.156)
    assert {c.id for c in labs.combinations} == {"diabetes-from-labs", "thyroid-from-labs"}


# --- the Done-when: labs only, molar vs other units ---------------------------------


def test_same_values_in_other_units_give_the_same_result(profiles: Profiles) -> None:
    molar = _screen("lab-diabetes-thyroid-molar-units", profiles)[0]
    other = _screen("lab-diabetes-thyroid-other-units", profiles)[0]
    assert molar.tier == other.tier != "low"
    assert molar.decision.row.row == other.decision.row.row
    assert sorted(molar.findings.criteria) == sorted(other.findings.criteria)
    for key, finding in molar.findings.criteria.items():
        assert finding.onset_bound == other.findings.criteria[key].onset_bound, key
    assert sorted(molar.basis) == sorted(other.basis)


def test_a_lab_made_criterion_begins_at_the_later_of_its_two_results(
    profiles: Profiles,
) -> None:
    name = "lab-diabetes-thyroid-molar-units"
    result = _screen(name, profiles)[0]
    glucose, antibody = _effective(name, "glu"), _effective(name, "gad")
    assert glucose < antibody
    assert result.findings.criteria["ENDO-DM"].onset_bound == antibody
    tsh, tpo = _effective(name, "tsh"), _effective(name, "tpo")
    assert result.findings.criteria["ENDO-THY"].onset_bound == max(tsh, tpo)


def test_evidence_names_value_unit_date_and_age_and_basis_holds_every_result(
    profiles: Profiles,
) -> None:
    result = _screen("lab-diabetes-thyroid-molar-units", profiles)[0]
    resource = risk_assessment(
        result, profiles.rules, computed_at=dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
    )
    rationale = resource["prediction"][0]["rationale"]
    assert "Glucose 13.2 mmol/L (= 238 mg/dL) [LOINC 14749-6] (onset 2025-04-15, age 3 months" in (
        rationale
    )
    assert "GAD65 antibody 0.35 nmol/L" in rationale
    assert "TSH 14.5 mIU/L" in rationale and "for age 1-24 months" in rationale
    evidence_refs = {
        e.reference
        for finding in result.findings.criteria.values()
        for e in finding.evidence
    }
    assert {b["reference"] for b in resource["basis"]} == evidence_refs
    assert "14.5" in resource["text"]["div"]


def test_hyperglycemia_alone_is_explained_not_counted(profiles: Profiles) -> None:
    result = _screen("lab-hyperglycemic-infant-no-antibody", profiles)[0]
    assert "ENDO-DM" not in result.findings.criteria
    view = explain_result(result)
    reasons = {n["reference"]: n["reason"] for n in view["notCounted"]}
    assert "does not make diabetes" in reasons["Observation/a1c"]
    assert "8.1 %" in reasons["Observation/a1c"]


# --- shown, not scored; the debug view ----------------------------------------------


def test_albumin_and_free_t4_are_shown_not_scored(profiles: Profiles) -> None:
    result = _screen("lab-shown-albumin-free-t4", profiles)[0]
    assert not result.findings.criteria and not result.findings.supporting
    shown = {e.reference: e for e in result.findings.shown}
    # The out-of-range results and the latest result of each lab; not the normal middle one.
    assert set(shown) == {
        "Observation/alb-low", "Observation/alb-late", "Observation/ft4-low",
        "Observation/ft4-pmol",
    }
    assert "below the lab's reference range (3.5-5.2 g/dL)" in (shown["Observation/alb-low"].detail
                                                                  or "")
    assert shown["Observation/alb-low"].description == "Albumin 2.1 g/dL"
    assert "Observation/alb-low" not in result.basis


def test_malformed_observations_are_skipped_with_a_reason(profiles: Profiles) -> None:
    result = _screen("lab-malformed-observations", profiles)[0]
    view = explain_result(result)
    skipped = {n["reference"] for n in view["notCounted"]}
    for ref in ("eie", "cancel", "noval", "mg", "molmol", "eosbad", "tshtext", "tshneo",
                "future"):
        assert f"Observation/{ref}" in skipped, ref
    assert "Observation/ige" not in skipped


# --- robustness: nothing a lab value holds raises -----------------------------------

_UNITS = st.sampled_from(
    ["mg/dL", "mmol/L", "%", "mmol/mol", "k[IU]/L", "kU/L", "10*3/uL", "/uL", "nmol/L",
     "U/mL", "{percentile}", "", "[", "10*", "m[IU]/L/", "%%", "g/dL", "\u00b5IU/mL"]
) | st.text(max_size=12)
_CODES = st.sampled_from(
    ["4548-4", "59261-8", "1558-6", "2339-0", "14749-6", "3016-3", "8099-4", "94345-6",
     "56718-0", "19113-0", "26449-9", "713-8", "1751-7", "3024-7", "8336-0"]
)


@st.composite
def _observation(draw: st.DrawFn) -> dict[str, Any]:
    quantity: dict[str, Any] = {
        "value": draw(st.floats(min_value=-1e6, max_value=1e9, allow_nan=False)),
        "unit": draw(_UNITS),
    }
    if draw(st.booleans()):
        quantity["system"], quantity["code"] = "http://unitsofmeasure.org", quantity["unit"]
    if draw(st.booleans()):
        quantity["comparator"] = draw(st.sampled_from(["<", "<=", ">", ">="]))
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": draw(st.sampled_from(["final", "amended", "entered-in-error", "cancelled"])),
        "code": {"coding": [{"system": "http://loinc.org", "code": draw(_CODES)}]},
        "subject": {"reference": "Patient/p"},
        "valueQuantity": quantity,
    }
    if draw(st.booleans()):
        resource["effectiveDateTime"] = draw(st.sampled_from(["2025", "2025-03", "2025-03-04"]))
    if draw(st.booleans()):
        resource["interpretation"] = [{"coding": [{"code": draw(st.sampled_from(
            ["H", "HH", "L", "N", "POS", "NEG", "A", "IND"]))}]}]
    if draw(st.booleans()):
        age = {"value": draw(st.integers(0, 30)), "unit": "a", "system":
               "http://unitsofmeasure.org", "code": "a"}
        resource["referenceRange"] = [{
            "low": {"value": draw(st.floats(0, 100, allow_nan=False))},
            "high": {"value": draw(st.floats(0, 1e4, allow_nan=False)),
                     "unit": draw(_UNITS)},
            "age": {"low": age},
        }]
    return resource


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations=st.lists(_observation(), min_size=1, max_size=6))
def test_any_lab_value_screens_without_error(
    observations: list[dict[str, Any]], profiles: Profiles
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p", "birthDate": "2024-06-01"}}]
        + [{"resource": o} for o in observations],
    }
    results = screen_bundle(bundle, profiles.rules, as_of=dt.date(2026, 1, 1))
    assert len(results) == 1
    explain_result(results[0])


# --- a broken lab file stops the start ------------------------------------------------


def _docs() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    rules = load_json(PROFILES / "rules" / "ipex-screening-rules.json")
    value_sets = [load_json(p) for p in sorted((PROFILES / "ValueSet").glob("*.json"))]
    labs = load_json(PROFILES / LABS_FILE)
    return rules, value_sets, labs


def _lab(doc: dict[str, Any], lab_id: str) -> dict[str, Any]:
    return next(lab for lab in doc["labs"] if lab["id"] == lab_id)


def _drop_read_code(doc: dict[str, Any]) -> None:
    doc["readCodes"].remove("19113-0")


def _extra_read_code(doc: dict[str, Any]) -> None:
    doc["readCodes"].append("29463-7")


def _bad_unit(doc: dict[str, Any]) -> None:
    _lab(doc, "albumin")["scales"][0]["unit"] = "grams per decilitre"


def _disagreeing_glucose(doc: dict[str, Any]) -> None:
    _lab(doc, "glucose-fasting")["scales"][0]["threshold"]["value"] = 140


def _unknown_evidence(doc: dict[str, Any]) -> None:
    _lab(doc, "total-ige")["evidence"] = "hyper-ige"


def _code_in_two_labs(doc: dict[str, Any]) -> None:
    _lab(doc, "tsh")["codes"].append("19113-0")


def _bands_out_of_order(doc: dict[str, Any]) -> None:
    _lab(doc, "total-ige")["scales"][0]["byAge"].reverse()


def _alias_to_nothing(doc: dict[str, Any]) -> None:
    doc["unitAliases"]["K/uL"] = "kilo per microlitre"


def _part_without_combination(doc: dict[str, Any]) -> None:
    _lab(doc, "tpo-antibody")["part"] = "thyroid-antibodies"


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (_drop_read_code, "missing ['19113-0']"),
        (_extra_read_code, "not in any lab ['29463-7']"),
        (_bad_unit, "not a UCUM unit"),
        (_disagreeing_glucose, "disagree at molar mass"),
        (_unknown_evidence, "named by no category's labEvidence"),
        (_code_in_two_labs, "one code, one meaning"),
        (_bands_out_of_order, "rising order"),
        (_part_without_combination, "is in no combination"),
        (_alias_to_nothing, "unit alias 'K/uL'"),
    ],
)
def test_a_broken_lab_file_is_refused_with_a_clear_message(break_it: Any, message: str) -> None:
    rules, value_sets, labs = _docs()
    broken = copy.deepcopy(labs)
    break_it(broken)
    with pytest.raises(RuleSetError, match="lab rules") as caught:
        build_rule_set(rules, value_sets, labs_doc=broken)
    assert message in str(caught.value)


def test_a_broken_lab_file_stops_loading_the_profiles(tmp_path: Path) -> None:
    copied = tmp_path / "fhir_profiles"
    shutil.copytree(PROFILES, copied, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    labs = load_json(copied / LABS_FILE)
    labs["labs"][0]["positivity"] = "sometimes"
    (copied / LABS_FILE).write_text(json.dumps(labs), encoding="utf-8")
    with pytest.raises(ProfilesError,
                       match=r"labs\.0\.positivity: Input should be .fixed., .ordered. or .shown."):
        load_profiles(copied)
