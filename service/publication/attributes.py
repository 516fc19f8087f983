"""The evidence-based DSI source attributes of 45 CFR 170.315(b)(11)(iv)(A), in its order.

(1) bibliographic citation, (2) developer, (3) funding source of the technical
implementation, (4) release and revision dates, then (5)-(13) whether each of race,
ethnicity, language, sexual orientation, gender identity, sex, date of birth, social
determinants of health and health status assessments is used (as input or output).
Every value comes from the rule table's ``publication`` section and its version.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..screening import RuleSet


@dataclass(frozen=True, slots=True)
class SourceAttribute:
    """One attribute as the regulation names it, and what this rule set says of it."""

    number: int
    name: str
    text: str
    use: str | None = None  # for the data elements: input, output, ... or "not used"
    explanation: str | None = None  # for the data elements: how (or that it is not read)


def source_attributes(rules: RuleSet) -> list[SourceAttribute]:
    """The thirteen attributes, numbered as in (b)(11)(iv)(A)(1)-(13)."""
    publication = rules.publication
    citations = " ".join(f"[{i}] {c.citation} {c.url}"
                         for i, c in enumerate(publication.citations, start=1))
    developer = publication.developer
    revisions = "; ".join(f"version {r.version} released {r.date}"
                          for r in publication.revisions)
    found = [
        SourceAttribute(1, "Bibliographic citation of the intervention (clinical research or "
                           "guideline)", citations),
        SourceAttribute(2, "Developer of the intervention (translation from clinical research "
                           "or guideline)", f"{developer.name} ({developer.url}): "
                                            f"{developer.role}"),
        SourceAttribute(3, "Funding source of the technical implementation for the "
                           "intervention's development", publication.funding),
        SourceAttribute(4, "Release and, if applicable, revision dates of the intervention or "
                           "reference source",
                        f"First released {publication.release_date}; {revisions} (this is "
                        f"version {rules.version}, revised {rules.date})."),
    ]
    for number, element in enumerate(publication.data_elements, start=5):
        found.append(SourceAttribute(
            number, f"Use of {element.element}",
            f"{element.use.capitalize()}. {element.explanation}", use=element.use,
            explanation=element.explanation))
    return found
