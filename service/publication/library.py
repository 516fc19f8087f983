"""The rule set's FHIR ``Library``, generated from the rule documents at start.

Nothing in it is typed twice: version, title and dates come from the rule table,
the source attributes (citations, developer, funding, release and revision dates,
which patient data are used) from its ``publication`` section, the parts and the
ValueSets it depends on from the rule documents themselves. Where FHIR R4 has an
element for a source attribute it is used (``relatedArtifact`` citations, ``author``,
``date``, a ``predecessor`` per earlier revision, ``dataRequirement`` for the inputs);
the whole list, in the regulation's order, is also the ``description``'s last section.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..screening import RuleSet
from ..screening.rule_documents import PublicationDoc
from .attributes import SourceAttribute, source_attributes

LIBRARY_TYPE = {
    "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/library-type",
        "code": "logic-library",
        "display": "Logic Library",
    }]
}
METHOD_CODE_SYSTEM = "https://ipex-screen.org/fhir/CodeSystem/ipex-screening-method"
_VALUE_SET_URL = re.compile(r"https://ipex-screen\.org/fhir/ValueSet/[\w.-]+")

#: What the screening reads of each resource type (the inputs, as FHIR data requirements).
DATA_REQUIREMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Patient", ("birthDate", "gender", "extension")),
    ("Condition", ("code", "verificationStatus", "clinicalStatus", "onset[x]", "abatement[x]",
                   "recordedDate", "subject")),
    ("Observation", ("code", "value[x]", "component", "interpretation", "referenceRange",
                     "effective[x]", "issued", "subject")),
    ("ServiceRequest", ("code", "status", "subject")),
)


def _name(identifier: str) -> str:
    """A computable name (FHIR's ``name``): ``ipex-screening-rules`` -> ``IpexScreeningRules``."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", identifier) if part)


def _value_sets_read(documents: Mapping[str, Mapping[str, Any]]) -> list[str]:
    found = {url for document in documents.values()
             for url in _VALUE_SET_URL.findall(json.dumps(document))}
    return sorted(found)


def _description(rules: RuleSet, attributes: list[SourceAttribute]) -> str:
    criteria = "; ".join(
        f"{c.id} {c.display}" + (f" (part of {c.part_of.id})" if c.part_of else "")
        for c in rules.criteria
    )
    supporting = "; ".join(c.display for c in rules.supporting)
    causes = "; ".join(f"{c.display} ({c.window_text})" for c in rules.explanation.causes)
    rows = "\n".join(
        f"    {row.row}. {row.tier}: {row.rule}"
        + (f" (recommend {row.recommend})" if row.recommend else "")
        for row in rules.tiers
    )
    lines = [
        f"The rule set behind every IPEX screening RiskAssessment (RiskAssessment.method: "
        f"{METHOD_CODE_SYSTEM}#{rules.id}, version {rules.version}).",
        "",
        f"* **Criteria**: {criteria}.",
        f"* **Supporting features** (distinct categories, onset before "
        f"{rules.supporting_onset_before.describe()}): {supporting}.",
        f"* **Explained diarrhea**: a nonspecific diarrhea code is found, not counted, when "
        f"a coded cause explains it: {causes}.",
        "* **Tiers**, first row that matches:",
        rows,
        "* **Suppression**: no test is recommended when IPEX is already diagnosed or FOXP3 "
        "is already ordered or reported; the tier is still given.",
        "",
        "## Source attributes (45 CFR 170.315(b)(11)(iv)(A))",
        "",
    ]
    lines += [f"{i}. **{a.name}**: {a.text}" for i, a in enumerate(attributes, start=1)]
    return "\n".join(lines)


def _citations(publication: PublicationDoc) -> list[dict[str, Any]]:
    return [
        {"type": "citation", "label": c.id, "display": c.supports, "citation": c.citation,
         "url": c.url}
        for c in publication.citations
    ]


def _predecessors(rules: RuleSet) -> list[dict[str, Any]]:
    return [
        {"type": "predecessor",
         "display": f"Version {r.version}, released {r.date}: {r.summary}",
         "resource": f"{rules.publication.library}|{r.version}"}
        for r in rules.publication.revisions[:-1]
    ]


def rules_library(
    rules: RuleSet,
    *,
    documents: Mapping[str, Mapping[str, Any]],
    value_set_titles: Mapping[str, str],
) -> dict[str, Any]:
    """The ``Library`` of the rule set: ``documents`` are the rule files by their path."""
    publication = rules.publication
    parts = [
        {"type": "composed-of",
         "display": f"{doc.get('title', path)} (id {doc.get('id')}, version {doc.get('version')})",
         "document": {"contentType": "application/json", "title": path}}
        for path, doc in documents.items()
    ]
    depends = [
        {"type": "depends-on", "display": value_set_titles.get(url, url), "resource": url}
        for url in _value_sets_read(documents)
    ]
    library_id = publication.library.rsplit("/", 1)[-1]
    return {
        "resourceType": "Library",
        "id": library_id,
        "url": publication.library,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": rules.url}],
        "version": rules.version,
        "name": _name(rules.id),
        "title": rules.title,
        "status": "active",
        "experimental": False,
        "type": LIBRARY_TYPE,
        "date": rules.date,
        "publisher": publication.developer.name,
        "contact": [{"name": publication.developer.name,
                     "telecom": [{"system": "url", "value": publication.developer.url}]}],
        "description": _description(rules, source_attributes(rules)),
        "purpose": publication.purpose,
        "usage": publication.intended_use,
        "approvalDate": rules.date,
        "author": [{"name": publication.developer.name,
                    "telecom": [{"system": "url", "value": publication.developer.url}]}],
        "relatedArtifact": [*_citations(publication), *_predecessors(rules), *parts, *depends],
        "dataRequirement": [
            {"type": kind, "mustSupport": list(paths)} for kind, paths in DATA_REQUIREMENTS
        ],
        "content": [{"contentType": "application/json", "title": path} for path in documents],
    }
