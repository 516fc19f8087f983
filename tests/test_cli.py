"""``ipex-screen screen FILE...``: screen Bundle files with no server, as the contract says.

Exit 0 when every file screened, 1 when any failed (its OperationOutcome on stderr),
2 for a usage error. One file prints its result, several a ``collection`` Bundle.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.config import default_profiles_dir

from .conftest import scenario_files
from .scenarios import Scenario, load_scenario


def _scenario(name: str) -> Scenario:
    return load_scenario(next(p for p in scenario_files() if p.stem == name))


def _bundle_file(tmp_path: Path, name: str) -> tuple[Path, Scenario]:
    scenario = _scenario(name)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(scenario.bundle), encoding="utf-8")
    return path, scenario


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _risk(assessment: dict[str, Any]) -> str:
    assert assessment["resourceType"] == "RiskAssessment"
    code = assessment["prediction"][0]["qualitativeRisk"]["coding"][0]["code"]
    assert isinstance(code, str)
    return code


@pytest.fixture(autouse=True)
def _no_site_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads IPEX_ settings from the environment: start each test from none."""
    for name in ("IPEX_PROFILES_DIR", "IPEX_ORDER_CODE", "IPEX_MAX_BODY_MB"):
        monkeypatch.delenv(name, raising=False)


def test_one_file_prints_its_risk_assessment(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, scenario = _bundle_file(tmp_path, "classic-infant-boy-triad")
    code, out, err = _run(["screen", str(path), "--as-of", scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    assessment = json.loads(out)
    assert _risk(assessment) == "high"
    assert assessment["subject"] == {"reference": "Patient/baby1"}
    assert "FOXP3" in assessment["mitigation"]
    assert sorted(b["reference"] for b in assessment["basis"]) == [
        "Condition/derm", "Condition/dm", "Condition/ent"]


@pytest.mark.parametrize("name", ["classic-infant-boy-triad",
                                  "explained-celiac-t1d-school-age-persisting-diarrhea-low"])
def test_a_scenario_file_screens_as_its_test_does(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario file is screened as it is: its Bundle, as of its asOf, said on stderr."""
    path = next(p for p in scenario_files() if p.stem == name)
    scenario = load_scenario(path)
    code, out, err = _run(["screen", str(path)], capsys)
    assert code == 0, err
    assert _risk(json.loads(out)) == scenario.expect[0]["tier"]
    assert f"as of {scenario.as_of.isoformat()} (its asOf" in err


def test_a_published_case_file_screens_as_its_label_says(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parent / "data" / "published" / "ipex-rubiocabezas2009-r337q.json"
    case = json.loads(path.read_text(encoding="utf-8"))
    code, out, _ = _run(["screen", str(path)], capsys)
    assert code == 0
    assert _risk(json.loads(out)) == case["expected"]["tier"]
    # --as-of wins over the file's date: before the child was born, nothing counts yet.
    code, out, err = _run(["screen", str(path), "--as-of", "2000-01-01"], capsys)
    assert "as of 2000-01-01" in err
    assert _risk(json.loads(out)) == "low"


def test_two_files_print_a_collection_bundle(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    high, scenario = _bundle_file(tmp_path, "classic-infant-boy-triad")
    low, _ = _bundle_file(tmp_path, "low-t1d-and-eczema-without-enteropathy")
    code, out, err = _run(["screen", str(high), str(low), "--as-of",
                           scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    bundle = json.loads(out)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "collection")
    assert [_risk(e["resource"]) for e in bundle["entry"]] == ["high", "low"]
    assert [e["fullUrl"] for e in bundle["entry"]] == [
        f"{high.resolve().as_uri()}#Patient/baby1", f"{low.resolve().as_uri()}#Patient/p"]


def test_several_files_with_several_patients_give_one_flat_bundle_naming_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    multi, scenario = _bundle_file(tmp_path, "multi-patient-transaction-references")
    high, _ = _bundle_file(tmp_path, "classic-infant-boy-triad")
    code, out, err = _run(["screen", str(multi), str(high), "--as-of",
                           scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    entries = json.loads(out)["entry"]
    assert all(e["resource"]["resourceType"] == "RiskAssessment" for e in entries)
    assert [e["fullUrl"].split("#")[0].rsplit("/", 1)[-1] for e in entries] == [
        multi.name, multi.name, high.name]
    assert len({e["fullUrl"] for e in entries}) == 3


def test_explain_covers_every_patient_of_every_file(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    multi, scenario = _bundle_file(tmp_path, "multi-patient-transaction-references")
    high, _ = _bundle_file(tmp_path, "classic-infant-boy-triad")
    code, out, err = _run(["screen", "--explain", str(multi), str(high), "--as-of",
                           scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    accounts = json.loads(out)
    assert [(a["file"], a["tier"]) for a in accounts] == [
        (str(multi), "low"), (str(multi), "high"), (str(high), "high")]


def test_a_bad_as_of_says_which_format(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _bundle_file(tmp_path, "classic-infant-boy-triad")
    code, _, err = _run(["screen", str(path), "--as-of", "1/9/2025"], capsys)
    assert code == 2
    assert "'1/9/2025' is not a date: use YYYY-MM-DD" in err


def test_a_file_with_two_patients_prints_a_bundle(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path, scenario = _bundle_file(tmp_path, "multi-patient-transaction-references")
    code, out, err = _run(["screen", str(path), "--as-of", scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    bundle = json.loads(out)
    assert bundle["resourceType"] == "Bundle"
    subjects = [e["resource"]["subject"]["reference"] for e in bundle["entry"]]
    assert subjects == [scenario.expect[0]["patient"], "Patient/b"]


@pytest.mark.parametrize(("content", "fragment"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"resourceType": "Patient", "id": "p"}), "expected a Bundle"),
    (json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}), "no Patient"),
])
def test_a_bad_file_exits_1_with_an_operation_outcome_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    code, out, err = _run(["screen", str(bad)], capsys)
    assert code == 1
    assert out == ""
    outcome = json.loads(err)
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert str(bad) in diagnostics and fragment in diagnostics, diagnostics


def test_a_missing_file_among_good_ones_exits_1_and_still_prints_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, scenario = _bundle_file(tmp_path, "classic-infant-boy-triad")
    missing = tmp_path / "missing.json"
    code, out, err = _run(["screen", str(good), str(missing), "--as-of",
                           scenario.as_of.isoformat()], capsys)
    assert code == 1
    assert [_risk(e["resource"]) for e in json.loads(out)["entry"]] == ["high"]
    outcome = json.loads(err)
    assert outcome["issue"][0]["code"] == "not-found"
    assert str(missing) in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("argv", [[], ["screen"], ["screen", "x.json", "--as-of", "soon"],
                                  ["--no-such-option"], ["frobnicate"]],
                         ids=["nothing", "no-files", "bad-date", "bad-option", "bad-command"])
def test_a_usage_error_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    assert "usage" in err.lower()


def test_dash_reads_the_bundle_from_stdin(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = _scenario("female-classic-triad-gene-panel")
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(scenario.bundle).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = _run(["screen", "-", "--as-of", scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    assessment = json.loads(out)
    assert _risk(assessment) == "high"
    assert "IPEX-like" in assessment["mitigation"]
    assert "FOXP3 gene sequencing" not in assessment["mitigation"]


def test_explain_prints_the_findings_with_the_reasons_for_what_did_not_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, scenario = _bundle_file(tmp_path, "diarrhea-r19-7-short-5-days")
    code, out, err = _run(["screen", str(path), "--explain", "--as-of",
                           scenario.as_of.isoformat()], capsys)
    assert code == 0, err
    explained = json.loads(out)
    assert (explained["tier"], explained["tierRow"], explained["recommendationKind"]) == (
        "moderate", 5, "NDM")
    assert explained["asOf"] == scenario.as_of.isoformat()
    assert list(explained["criteria"]) == ["ENDO-DM"]
    evidence = explained["criteria"]["ENDO-DM"]["evidence"][0]
    assert (evidence["reference"], evidence["ageAtOnset"]) == ("Condition/dm", "4 months")
    reasons = {n["reference"]: n["reason"] for n in explained["notCounted"]}
    assert "lasted 5 days" in reasons["Condition/dia"]


def test_a_broken_rules_directory_exits_1_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "fhir_profiles"
    shutil.copytree(default_profiles_dir(), profiles,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (profiles / "ValueSet" / "ipex-dermatitis.json").write_text("{", encoding="utf-8")
    monkeypatch.setenv("IPEX_PROFILES_DIR", str(profiles))
    path, _ = _bundle_file(tmp_path, "classic-infant-boy-triad")
    code, out, err = _run(["screen", str(path)], capsys)
    assert code == 1
    assert out == ""
    assert "ipex-dermatitis.json" in err


def test_the_installed_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ipex-screen"
    assert script.is_file(), f"{script}: install the project (pip install -e '.[test]')"
    path, scenario = _bundle_file(tmp_path, "row3-diabetes-at-5-months-with-eczema")
    done = subprocess.run(
        [str(script), "screen", str(path), "--as-of", scenario.as_of.isoformat()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assessment = json.loads(done.stdout)
    assert _risk(assessment) == "high"
    assert "FOXP3" in assessment["mitigation"]
    usage = subprocess.run([str(script)], capture_output=True, text=True, timeout=120,
                           check=False)
    assert usage.returncode == 2
