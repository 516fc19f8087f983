"""Load ``fhir_profiles/`` once at start: the rule set and the conformance resources.

A broken or inconsistent file stops the start with a message naming the file. The
rule set's ``Library`` (its source attributes included) is not a file: it is generated
here from the rule documents (:mod:`.publication.library`), so nothing is typed twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .publication.library import rules_library
from .screening import RuleSet, RuleSetError, build_rule_set

RULES_FILE = "rules/ipex-screening-rules.json"
LABS_FILE = "rules/ipex-lab-rules.json"
CANONICAL_BASE = "https://ipex-screen.org/fhir/"


class ProfilesError(RuntimeError):
    """``fhir_profiles/`` cannot be loaded; the message says which file and why."""


@dataclass(slots=True)
class Profiles:
    """The loaded rule set and every conformance resource, by type and id."""

    rules: RuleSet
    resources: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def get(self, resource_type: str, resource_id: str) -> Mapping[str, Any] | None:
        return self.resources.get((resource_type, resource_id))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfilesError(f"{path}: cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ProfilesError(f"{path}: not valid JSON: {exc}") from exc


def load_profiles(directory: Path) -> Profiles:
    """Read and check every file under ``directory``."""
    if not directory.is_dir():
        raise ProfilesError(f"{directory}: the fhir_profiles directory does not exist")
    resources: dict[tuple[str, str], Mapping[str, Any]] = {}
    for path in sorted(directory.glob("*/*.json")):
        if path.parent.name == "rules":
            continue
        doc = _read_json(path)
        kind, rid, url = doc.get("resourceType"), doc.get("id"), doc.get("url")
        if not isinstance(kind, str) or not isinstance(rid, str):
            raise ProfilesError(f"{path}: a conformance resource needs resourceType and id")
        if path.parent.name != kind or path.stem != rid:
            raise ProfilesError(f"{path}: must be stored as {kind}/{rid}.json")
        if isinstance(url, str) and not url.startswith(CANONICAL_BASE):
            raise ProfilesError(f"{path}: canonical url must start with {CANONICAL_BASE}")
        if (kind, rid) in resources:
            raise ProfilesError(f"{path}: duplicate {kind}/{rid}")
        resources[(kind, rid)] = doc
    rules_path = directory / RULES_FILE
    labs_path = directory / LABS_FILE
    rules_doc = _read_json(rules_path)
    labs_doc = _read_json(labs_path) if labs_path.exists() else None
    value_sets = [doc for (kind, _), doc in resources.items() if kind == "ValueSet"]
    try:
        rules = build_rule_set(rules_doc, value_sets, labs_doc=labs_doc)
    except (RuleSetError, KeyError, TypeError, ValueError) as exc:
        raise ProfilesError(f"{rules_path}: {exc}") from exc
    documents = {f"fhir_profiles/{RULES_FILE}": rules_doc}
    if labs_doc is not None:
        documents[f"fhir_profiles/{LABS_FILE}"] = labs_doc
    library = rules_library(rules, documents=documents, value_set_titles={
        str(doc.get("url")): str(doc.get("title")) for doc in value_sets})
    if ("Library", library["id"]) in resources:
        raise ProfilesError(f"{directory}/Library/{library['id']}.json: the rule set's Library "
                            "is generated from the rule documents; remove the file")
    resources[("Library", library["id"])] = library
    return Profiles(rules=rules, resources=resources)
