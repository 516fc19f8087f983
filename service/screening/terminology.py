"""Codes and ValueSets: which category a coded diagnosis belongs to.

A ValueSet here is the FHIR resource as shipped in ``fhir_profiles/ValueSet``; its
``compose`` is compiled once into a :class:`ValueSetMatcher`. Codes are compared in
a normal form per code system, so that ``E1065`` means ``E10.65`` and
``ORPHA:37042`` means Orphanet ``37042``. ICD code families use the FHIR
``is-a`` filter, which for ICD means every code below the family.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
HPO = "http://human-phenotype-ontology.org"
ORPHANET = "http://www.orpha.net"
OMIM = "http://www.omim.org"
HGNC = "http://www.genenames.org/geneId"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

_ICD_SYSTEMS = frozenset({ICD10CM, ICD10})
_ICD_RE = re.compile(r"^[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?$")


class TerminologyError(ValueError):
    """A ValueSet the matcher cannot compile."""


def normalise_code(system: str, code: str) -> str:
    """Return the comparable form of ``code`` in ``system``."""
    text = code.strip()
    if system in _ICD_SYSTEMS:
        text = text.upper()
        if "." not in text and len(text) > 3:
            text = f"{text[:3]}.{text[3:]}"
        return text
    if system == HPO:
        text = text.upper().replace("_", ":")
        return text if text.startswith("HP:") else f"HP:{text}"
    if system == ORPHANET:
        return text.upper().removeprefix("ORPHA:").removeprefix("ORPHANET:")
    if system == OMIM:
        return text.upper().removeprefix("OMIM:").removeprefix("MIM:")
    if system == HGNC:
        return text.upper().removeprefix("HGNC:")
    return text


def _icd_is_a(code: str, family: str) -> bool:
    if code == family:
        return True
    if not code.startswith(family):
        return False
    # "E10" covers "E10.9"; "K52.2" covers "K52.21"; "K90" never covers "K900X".
    return "." in family or code[len(family)] == "."


@dataclass(slots=True)
class _SystemRule:
    codes: set[str] = field(default_factory=set)
    families: list[str] = field(default_factory=list)

    def matches(self, system: str, code: str) -> bool:
        if code in self.codes:
            return True
        if system in _ICD_SYSTEMS:
            return any(_icd_is_a(code, family) for family in self.families)
        return False


@dataclass(slots=True)
class ValueSetMatcher:
    """Membership test for one ValueSet's ``compose``."""

    url: str
    title: str
    include: dict[str, _SystemRule]
    exclude: dict[str, _SystemRule]
    displays: dict[tuple[str, str], str]

    def contains(self, system: str, code: str) -> bool:
        rule = self.include.get(system)
        if rule is None or not rule.matches(system, code):
            return False
        excluded = self.exclude.get(system)
        return excluded is None or not excluded.matches(system, code)

    def listed_codes(self) -> Iterable[tuple[str, str]]:
        """Every explicitly listed code and family root (for consistency checks)."""
        for system, rule in self.include.items():
            for code in rule.codes:
                yield system, code
            for family in rule.families:
                yield system, family


def _compile_part(
    parts: list[Mapping[str, Any]], url: str, displays: dict[tuple[str, str], str]
) -> dict[str, _SystemRule]:
    compiled: dict[str, _SystemRule] = {}
    for part in parts:
        system = part.get("system")
        if not isinstance(system, str):
            raise TerminologyError(f"{url}: every include/exclude needs a system")
        rule = compiled.setdefault(system, _SystemRule())
        for concept in part.get("concept", []):
            code = normalise_code(system, str(concept["code"]))
            rule.codes.add(code)
            if concept.get("display"):
                displays[(system, code)] = str(concept["display"])
        for flt in part.get("filter", []):
            if flt.get("property") != "concept" or flt.get("op") not in ("is-a", "descendent-of"):
                raise TerminologyError(
                    f"{url}: only 'concept is-a' filters are supported, got {flt!r}"
                )
            if system not in _ICD_SYSTEMS:
                raise TerminologyError(
                    f"{url}: is-a filters are only supported for ICD, not {system}"
                )
            family = normalise_code(system, str(flt["value"]))
            if not _ICD_RE.match(family):
                raise TerminologyError(f"{url}: {family!r} is not an ICD code")
            if flt["op"] == "is-a":
                rule.families.append(family)
            else:
                # descendent-of excludes the root itself: list every child family.
                raise TerminologyError(f"{url}: use is-a with an exclude instead of descendent-of")
        if "valueSet" in part:
            raise TerminologyError(f"{url}: compose by valueSet reference is not supported")
    return compiled


def compile_value_set(resource: Mapping[str, Any]) -> ValueSetMatcher:
    """Compile a FHIR ValueSet resource's ``compose`` into a matcher."""
    url = resource.get("url")
    if resource.get("resourceType") != "ValueSet" or not isinstance(url, str):
        raise TerminologyError("not a ValueSet with a canonical url")
    compose = resource.get("compose")
    if not isinstance(compose, Mapping) or not compose.get("include"):
        raise TerminologyError(f"{url}: a ValueSet needs compose.include")
    displays: dict[tuple[str, str], str] = {}
    include = _compile_part(list(compose["include"]), url, displays)
    exclude = _compile_part(list(compose.get("exclude", [])), url, {})
    return ValueSetMatcher(
        url=url,
        title=str(resource.get("title") or resource.get("name") or url),
        include=include,
        exclude=exclude,
        displays=displays,
    )


@dataclass(frozen=True, slots=True)
class SystemAliases:
    """Other URIs that EHRs send for the code systems the rules use (OIDs, old URIs)."""

    aliases: Mapping[str, str]

    def canonical(self, system: str) -> str:
        return self.aliases.get(system, system)
