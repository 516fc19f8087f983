"""The screening core is pure: no web framework, no I/O, no clock; it screens as of a given date.

The import scan reads every module of ``service/screening`` with ``ast`` (nothing is
imported, so a lazy import inside a function is caught as well as one at the top).
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.profiles import Profiles
from service.screening import screen_bundle
from service.screening.explain import explain_result
from service.screening.risk_assessment import risk_assessment

from .conftest import scenario_files
from .scenarios import load_scenario

CORE = Path(__file__).resolve().parent.parent / "service" / "screening"
FORBIDDEN_MODULES = frozenset({
    "flask", "requests", "werkzeug", "gunicorn", "sqlite3", "socket", "os", "pathlib", "time",
    "uuid", "random", "subprocess", "urllib", "http", "shutil", "tempfile", "io", "logging",
    "secrets", "multiprocessing", "importlib",
})
# Calls that read the clock, the file system or randomness, by their last attribute name.
FORBIDDEN_CALLS = frozenset({"now", "today", "utcnow", "open", "__import__", "getenv",
                             "read_text", "read_bytes", "write_text", "write_bytes"})
CORE_FILES = sorted(CORE.glob("*.py"))


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                yield node.lineno, func.id
            elif isinstance(func, ast.Attribute):
                yield node.lineno, func.attr


def test_the_core_has_modules_to_scan() -> None:
    names = {p.name for p in CORE_FILES}
    assert {"record.py", "findings.py", "tiers.py", "result.py", "dates.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=[p.name for p in CORE_FILES])
def test_core_module_imports_no_framework_io_or_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [f"line {line}: import {name}" for line, name in _imports(tree)
           if name.split(".")[0] in FORBIDDEN_MODULES]
    bad += [f"line {line}: {name}()" for line, name in _calls(tree) if name in FORBIDDEN_CALLS]
    assert not bad, f"{path.name} is not pure: {bad}"


def test_the_scan_catches_what_it_forbids() -> None:
    """The scan itself works: it flags a lazy import, a clock read and open()."""
    source = (
        "import datetime as dt\n"
        "from os import path\n"
        "def f():\n"
        "    import flask\n"
        "    return dt.date.today(), dt.datetime.now(), open('x')\n"
    )
    tree = ast.parse(source)
    imports = {name for _, name in _imports(tree)}
    calls = {name for _, name in _calls(tree)}
    assert {"os", "flask"} <= imports
    assert {"today", "now", "open"} <= calls & FORBIDDEN_CALLS


def _scenario(name: str) -> dict[str, object]:
    path = next(p for p in scenario_files() if p.stem == name)
    return load_scenario(path).bundle


def test_the_answer_depends_only_on_the_date_passed_in(profiles: Profiles) -> None:
    """Diarrhea since 2024-03-01 beside neonatal diabetes: 13 days on 2024-03-14 (the diabetes
    alone, moderate), 14 on 2024-03-15 (ENT + ENDO, high)."""
    bundle = _scenario("diarrhea-active-14-days-to-screening-date")
    pristine = copy.deepcopy(bundle)
    early, late = dt.date(2024, 3, 14), dt.date(2024, 3, 15)

    def screen(day: dt.date) -> dict[str, object]:
        (result,) = screen_bundle(bundle, profiles.rules, as_of=day)
        return explain_result(result)

    first_early, first_late = screen(early), screen(late)
    assert (first_early["tier"], first_late["tier"]) == ("moderate", "high")
    assert first_early["asOf"] == "2024-03-14" and first_late["asOf"] == "2024-03-15"
    # Same date, same answer, whatever was screened in between: no hidden state, no clock.
    assert screen(early) == first_early
    assert screen(late) == first_late
    assert screen(dt.date(2024, 3, 14)) == first_early
    assert bundle == pristine, "screening must not change the caller's bundle"


def test_evidence_after_the_screening_date_is_not_used(profiles: Profiles) -> None:
    """Screened before the diabetes began, the classic triad has no ENDO: it is not high."""
    bundle = _scenario("classic-infant-boy-triad")
    (before,) = screen_bundle(bundle, profiles.rules, as_of=dt.date(2025, 3, 20))
    (after,) = screen_bundle(bundle, profiles.rules, as_of=dt.date(2025, 9, 1))
    assert after.tier == "high"
    assert "ENDO-DM" not in before.findings.criteria
    assert before.tier == "low"
    assert any(n.reason == "began after the screening date" for n in before.findings.not_counted)


def test_the_risk_assessment_takes_its_time_and_id_from_the_caller(profiles: Profiles) -> None:
    (result,) = screen_bundle(_scenario("classic-infant-boy-triad"), profiles.rules,
                              as_of=dt.date(2025, 9, 1))
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    one = risk_assessment(result, profiles.rules, computed_at=when, resource_id="fixed-id")
    two = risk_assessment(result, profiles.rules, computed_at=when, resource_id="fixed-id")
    assert one == two
    assert one["id"] == "fixed-id"
    assert one["occurrenceDateTime"].startswith("2030-01-02T03:04:05")
