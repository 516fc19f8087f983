"""``ipex-screen population`` on Bulk exports: who is flagged, the outputs, unusable lines."""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import uuid
from pathlib import Path

import orjson
import pytest

from service.cli import main
from service.config import load_settings
from service.population import local_engine
from service.population.outputs import FLAGGED_COLUMNS
from service.population.patient import RISK_ASSESSMENT_NAMESPACE, PassedOver, line_ranges, uuid5
from service.population.run import PopulationRequest, screen_export
from service.population.source import SourceError, list_export

from .population_support import (
    AS_OF,
    OUTPUTS,
    Recorder,
    export_with_unusable_lines,
    outputs,
    synthea_plus_triad,
)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthea_plus_triad(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def screened(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert main(["population", str(export), "--out", str(out), "--as-of", AS_OF.isoformat(),
                 "--workers", "1"]) == 0
    return out


def _run(source: Path, out: Path, **options: object) -> dict[str, object]:
    request = PopulationRequest(out=out, as_of=AS_OF, **options)  # type: ignore[arg-type]
    return screen_export(source, request, load_settings({}), progress=Recorder())


def test_the_synthea_export_plus_the_triad_boy_flags_exactly_him(screened: Path) -> None:
    assert sorted(p.name for p in screened.iterdir()) == sorted(OUTPUTS)
    rows = list(csv.DictReader(io.StringIO((screened / "flagged.csv").read_text())))
    assert [r["patient_id"] for r in rows] == ["baby1"]
    (row,) = rows
    assert tuple(row) == FLAGGED_COLUMNS
    assert (row["tier"], row["row"]) == ("high", "1")
    assert row["recommendation"] == "IPEX" and row["test"].startswith("FOXP3")
    assert "ENT: Chronic diarrhea" in row["evidence"] and "at 1 month" in row["evidence"]
    assessments = [orjson.loads(x) for x in
                   (screened / "RiskAssessment.ndjson").read_bytes().splitlines()]
    assert len(assessments) == 41
    subjects = [a["subject"]["reference"] for a in assessments]
    assert subjects == sorted(subjects), "sorted by patient id"
    high = [a for a in assessments
            if a["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] != "low"]
    assert [a["subject"]["reference"] for a in high] == ["Patient/baby1"]
    assert "mitigation" in high[0]
    summary = orjson.loads((screened / "summary.json").read_bytes())
    assert summary["patients"] == {"inExport": 41, "screened": 41, "notScreened": 0,
                                   "flagged": 1, "suppressed": 0, "withSomethingNotRead": 0}
    assert summary["tiers"] == {"high": 1, "moderate": 0, "low": 40}
    assert summary["criterionAgesMonths"]["ENT"] == [1.7]
    assert summary["unusable"] == {"total": 0, "byKind": {}, "listed": []}


def test_the_risk_assessment_id_and_time_come_from_the_patient_and_the_as_of_date(
        screened: Path) -> None:
    first = orjson.loads((screened / "RiskAssessment.ndjson").read_bytes().splitlines()[0])
    assert first["occurrenceDateTime"] == "2025-09-01T00:00:00+00:00"
    assert len(first["id"]) == 36 and first["id"][14] == "5", "a UUID v5"


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_rerun_and_two_workers_write_identical_files(export: Path, screened: Path,
                                                       tmp_path: Path, start: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if start == "spawn":  # what a process with other threads (or not on Linux) does
        monkeypatch.setattr(local_engine, "can_fork", lambda: False)
    elif not local_engine.can_fork():
        pytest.skip("another test left a thread running in this process")
    progress = Recorder()
    request = PopulationRequest(out=tmp_path / "again", as_of=AS_OF, workers=2)
    screen_export(export, request, load_settings({}), progress=progress)
    assert outputs(tmp_path / "again") == outputs(screened)
    assert progress.done["screening"] == 41
    assert not [p for p in (tmp_path / "again").iterdir() if p.name.startswith(".")], \
        "the partitions are removed"


def test_several_gzip_files_per_type_and_a_manifest_give_the_same_answer(
        screened: Path, tmp_path: Path) -> None:
    split = synthea_plus_triad(tmp_path / "split", compress=True, lines_per_file=1000)
    names = sorted(p.name for p in split.iterdir())
    assert "Observation.4.ndjson.gz" in names and all(n.endswith(".gz") for n in names)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(orjson.dumps({"transactionTime": "2025-09-01T00:00:00Z",
                                       "output": [{"type": n.split(".")[0],
                                                   "url": f"split/{n}"} for n in names]}))
    _run(manifest, tmp_path / "out", workers=2)  # gzip blocks go to the workers whole
    mine, theirs = outputs(tmp_path / "out"), outputs(screened)
    for name in ("RiskAssessment.ndjson", "flagged.csv"):
        assert mine[name] == theirs[name]
    summary = orjson.loads(mine["summary.json"])
    assert summary["files"][0] == "Condition.ndjson.gz"
    assert summary["patients"]["flagged"] == 1


def test_flagged_only_keeps_only_his_risk_assessment(export: Path, tmp_path: Path) -> None:
    _run(export, tmp_path, flagged_only=True)
    lines = (tmp_path / "RiskAssessment.ndjson").read_bytes().splitlines()
    assert [orjson.loads(x)["subject"]["reference"] for x in lines] == ["Patient/baby1"]


def test_unusable_lines_are_counted_and_listed_never_fatal(tmp_path: Path) -> None:
    src = export_with_unusable_lines(tmp_path / "export")
    summary = _run(src, tmp_path / "out")
    unusable = summary["unusable"]
    assert isinstance(unusable, dict)
    assert unusable["byKind"] == {"bad-json": 2, "duplicate-patient": 1, "no-patient-id": 1,
                                  "no-patient-subject": 1, "not-a-resource": 1,
                                  "unknown-patient": 2}
    # The heart rate of an unknown patient is reported though its content is never kept.
    assert [(p["file"], p["line"], p["kind"]) for p in unusable["listed"]] == [
        ("Condition.ndjson", 2, "bad-json"),
        ("Condition.ndjson", 3, "unknown-patient"),
        ("Condition.ndjson", 4, "no-patient-subject"),
        ("Condition.ndjson", 7, "not-a-resource"),
        ("Condition.ndjson", 8, "bad-json"),
        ("Observation.ndjson", 2, "unknown-patient"),
        ("Patient.ndjson", 3, "duplicate-patient"),
        ("Patient.ndjson", 4, "no-patient-id"),
    ]
    assert summary["resources"] == {"Condition": 5, "Observation": 3, "Patient": 2}
    assert summary["resourcesCodedNotUsed"] == {"Observation": 3}
    # What the core could not read, at its place in the export, the value masked.
    not_read = summary["notRead"]
    assert isinstance(not_read, dict) and not_read["total"] == 1
    (item,) = not_read["listed"]
    assert (item["file"], item["line"], item["where"]) == (
        "Condition.ndjson", 5, "Condition.onsetDateTime")
    assert "is not a date" in item["reason"] and "2025" not in item["reason"]
    # He is still screened on the rest: ENT + ENDO before 24 months is high (row 2).
    assert summary["patients"] == {"inExport": 2, "screened": 1, "notScreened": 1,
                                   "flagged": 1, "suppressed": 0, "withSomethingNotRead": 1}
    assert summary["rows"] == {"2": 1}
    assert summary["resourcesNotRead"] == {"Encounter": 1}
    assert summary["exportErrors"] == {"issues": 1, "byCode": {"processing": 1}}
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Condition.ndjson" in report and "bad-json" in report
    assert "coded, not used by the rules" in report


def test_passing_over_what_the_rules_do_not_use_changes_no_result(
        export: Path, screened: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping vital signs and routine labs before grouping is only a speed-up: keeping
    every line gives the same RiskAssessments, worklist and counts."""
    monkeypatch.setattr("service.population.lines.passes_over", lambda *_: False)
    kept_all = _run(export, tmp_path / "all")
    assert kept_all["resourcesCodedNotUsed"] == {}
    summary = orjson.loads((screened / "summary.json").read_bytes())
    coded_not_used = summary.pop("resourcesCodedNotUsed")
    assert coded_not_used["Observation"] > 0.9 * summary["resources"]["Observation"]
    assert {k: v for k, v in kept_all.items() if k != "resourcesCodedNotUsed"} == summary
    mine, theirs = outputs(tmp_path / "all"), outputs(screened)
    for name in ("RiskAssessment.ndjson", "flagged.csv"):
        assert mine[name] == theirs[name]


def test_the_cli_checks_its_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main(["population", "--out", str(tmp_path)]) == 2
    assert "either SOURCE or --from" in capsys.readouterr().err
    assert main(["population", str(tmp_path), "--from", "https://x/fhir",
                 "--out", str(tmp_path)]) == 2
    assert main(["population", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["population", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no .ndjson" in capsys.readouterr().err
    assert main(["population", "x", "--out", "o", "--engine", "hadoop"]) == 2


def test_a_manifest_pointing_at_a_server_asks_for_from(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"output": [{"type": "Patient", "url": "https://ehr/x.ndjson"}]}')
    with pytest.raises(SourceError, match="--from"):
        list_export(manifest)


def test_progress_is_plain_lines_when_not_a_terminal(export: Path, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(export, tmp_path / "export")
    with gzip.open(tmp_path / "export" / "Patient.ndjson.gz", "wb") as handle:
        handle.write(b"")
    assert main(["population", str(tmp_path / "export"), "--out", str(tmp_path / "out"),
                 "--as-of", AS_OF.isoformat(), "--workers", "1"]) == 0
    err = capfd.readouterr().err
    assert "screening: 41 patients in" in err and "patients/s" in err
    assert "\r" not in err
    assert "screened 41 of 41 patients as of 2025-09-01: 1 flagged" in err


def test_passed_over_lines_keep_their_places_as_ranges() -> None:
    numbers = [3, 4, 5, 9, 11, 12]
    passed = PassedOver(0, "Observation", line_ranges(numbers))
    assert passed.lines == "3-5,9,11-12"
    assert list(passed.numbers()) == numbers


@pytest.mark.parametrize("name", ["baby1|2025-09-01|2.0.0", "", "é|x", "a" * 300])
def test_risk_assessment_ids_are_uuid5(name: str) -> None:
    assert uuid5(RISK_ASSESSMENT_NAMESPACE, name) == str(
        uuid.uuid5(RISK_ASSESSMENT_NAMESPACE, name))
