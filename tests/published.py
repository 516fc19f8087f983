"""The published-case corpus (``tests/data/published/``): load, screen, measure, report.

Each case is a child from a published report (or a published description of a common
picture), coded as a hospital would, with the tier worked out by hand from the rules
before the service was run. This module screens them all and renders the measured
table of ``docs/clinical-validation.md``::

    .venv/bin/python -m tests.published --write   # regenerate the measured section
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.screening import RuleSet, ScreeningResult, screen_bundle

from .conftest import load_json

PUBLISHED = Path(__file__).parent / "data" / "published"
DOC = Path(__file__).parents[1] / "docs" / "clinical-validation.md"
BEGIN = "<!-- measured: begin (python -m tests.published --write) -->"
END = "<!-- measured: end -->"
BIRTH_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
GROUPS = ("ipex", "ipex-like", "must-not-flag")


@dataclass(frozen=True)
class Case:
    id: str
    doc: Mapping[str, Any]

    @property
    def group(self) -> str:
        return str(self.doc["group"])

    @property
    def expected(self) -> Mapping[str, Any]:
        expected: Mapping[str, Any] = self.doc["expected"]
        return expected

    @property
    def as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.doc["asOf"])

    @property
    def sex(self) -> str:
        for entry in self.doc["bundle"]["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Patient":
                continue
            for extension in resource.get("extension", []):
                if extension.get("url") == BIRTH_SEX:
                    return {"M": "male", "F": "female"}.get(extension.get("valueCode"), "unknown")
            return str(resource.get("gender", "not recorded"))
        return "no Patient"

    @property
    def citation(self) -> str:
        c = self.doc["citation"]
        authors = str(c.get("authors") or "")
        first = authors.split(",")[0].strip() if authors and "not shown" not in authors else ""
        who = f"{first} et al." if first and "," in authors else (first or "authors not shown")
        source = " ".join(str(c[k]) for k in ("journal", "year") if c.get(k)
                          and "not shown" not in str(c[k]))
        ident = f"PMID {c['pmid']}" if c.get("pmid") else (f"doi:{c['doi']}" if c.get("doi")
                                                           else "")
        parts = [who, source, ident, str(c.get("patient") or "")]
        return "; ".join(p for p in parts if p)


def load_cases(directory: Path = PUBLISHED) -> list[Case]:
    return [Case(path.stem, load_json(path)) for path in sorted(directory.glob("*.json"))]


def screen_case(case: Case, rules: RuleSet) -> ScreeningResult:
    (result,) = screen_bundle(case.doc["bundle"], rules, as_of=case.as_of)
    return result


def flagged(tier: str) -> bool:
    return tier in ("high", "moderate")


@dataclass(frozen=True)
class Measured:
    case: Case
    result: ScreeningResult

    @property
    def agrees(self) -> bool:
        e = self.case.expected
        got = (self.result.tier, self.result.row.row, self.result.row.recommend)
        return got == (e["tier"], e["row"], e["kind"])


def _ratio(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100 * hits / total:.0f}%)" if total else "0/0"


def measure(cases: Iterable[Case], rules: RuleSet) -> list[Measured]:
    return [Measured(case, screen_case(case, rules)) for case in cases]


def _row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def _label(tier: str, row: int, kind: str | None) -> str:
    return f"{tier} (row {row}{', ' + kind if kind else ''})"


def render(measured: list[Measured], rules: RuleSet) -> str:
    """The measured section of docs/clinical-validation.md, from the corpus and the rules."""
    by_group = {g: [m for m in measured if m.case.group == g] for g in GROUPS}
    ipex, like, must_not = by_group["ipex"], by_group["ipex-like"], by_group["must-not-flag"]
    tested = [m for m in ipex if m.case.doc.get("clinicianWouldTest")]
    lines = [
        f"Rule set {rules.title} ({rules.version}); {len(measured)} cases; "
        f"{sum(m.agrees for m in measured)} screened exactly as labelled by hand "
        "(tier, row and recommendation kind).",
        "",
        "| measure | value |",
        "| --- | --- |",
        _row(["sensitivity: FOXP3-confirmed IPEX boys flagged (high or moderate)",
              _ratio(sum(flagged(m.result.tier) for m in ipex), len(ipex))]),
        _row(["... of those a clinician would have tested at that visit",
              _ratio(sum(flagged(m.result.tier) for m in tested), len(tested))]),
        _row(["... flagged high",
              _ratio(sum(m.result.tier == "high" for m in ipex), len(ipex))]),
        _row(["specificity: must-not-flag children not flagged",
              _ratio(sum(not flagged(m.result.tier) for m in must_not), len(must_not))]),
        _row(["IPEX-like disease flagged (a panel including FOXP3 or the IPEX-like genes)",
              _ratio(sum(flagged(m.result.tier) for m in like), len(like))]),
        "",
        _row(["case", "group", "gene", "sex", "citation", "by hand", "service", "agrees",
              "clinician would test"]),
        _row(["---"] * 9),
    ]
    for m in measured:
        e = m.case.expected
        lines.append(_row([
            f"`{m.case.id}`", m.case.group, m.case.doc.get("gene") or "-", m.case.sex,
            m.case.citation, _label(e["tier"], e["row"], e["kind"]),
            _label(m.result.tier, m.result.row.row, m.result.row.recommend),
            "yes" if m.agrees else "**no**",
            "yes" if m.case.doc.get("clinicianWouldTest") else "no",
        ]))
    misses = [m for m in ipex + like if not flagged(m.result.tier)]
    false_alerts = [m for m in must_not if flagged(m.result.tier)]
    lines += ["", "Not flagged (IPEX and IPEX-like), with the clinician's note on the case:", ""]
    lines += [f"- `{m.case.id}` ({m.case.doc.get('gene')}): {m.case.doc.get('clinicianNote')}"
              for m in misses] or ["- none"]
    lines += ["", "Flagged although they must not be:", ""]
    lines += [f"- `{m.case.id}` ({_label(m.result.tier, m.result.row.row, m.result.row.recommend)})"
              f": {m.case.doc.get('clinicianNote')}" for m in false_alerts] or ["- none"]
    return "\n".join(lines)


def current_section(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def main(argv: list[str] | None = None) -> int:
    from service.config import default_profiles_dir
    from service.profiles import load_profiles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the measured section")
    args = parser.parse_args(argv)
    rules = load_profiles(default_profiles_dir()).rules
    section = render(measure(load_cases(), rules), rules)
    if not args.write:
        print(section)
        return 0
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + section + "\n" + text[end:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
