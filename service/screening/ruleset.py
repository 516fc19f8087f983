"""The screening rules as typed data, built from the documents in ``fhir_profiles/``.

:func:`build_rule_set` takes the parsed rule table and ValueSets (it reads no
files) and checks them: every referenced ValueSet exists, every tier names known
criteria, and no code belongs to two categories ("one code, one meaning").
A problem raises :class:`RuleSetError` naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .dates import AgeLimit
from .lab_rules import LabRules, LabRulesError, lab_evidence_ids, parse_lab_rules
from .terminology import (
    SystemAliases,
    TerminologyError,
    ValueSetMatcher,
    compile_value_set,
    normalise_code,
)

Tier = Literal["low", "moderate", "high"]
TIERS: tuple[Tier, ...] = ("low", "moderate", "high")
Sex = Literal["male", "female", "unknown"]


class RuleSetError(ValueError):
    """The rule documents are inconsistent; the service must not start."""


@dataclass(frozen=True, slots=True)
class EvidenceSource:
    """One ValueSet that gives evidence for a category, with its conditions."""

    value_set: ValueSetMatcher
    onset_before: AgeLimit | None = None
    onset_at_or_after: AgeLimit | None = None
    persistent_for_days: int | None = None

    def describe_condition(self) -> str:
        parts = []
        if self.onset_before:
            parts.append(f"onset before {self.onset_before.describe()}")
        if self.onset_at_or_after:
            parts.append(f"onset at {self.onset_at_or_after.describe()} or later")
        if self.persistent_for_days:
            parts.append(f"persistent for at least {self.persistent_for_days} days")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Category:
    """A triad criterion (ENT, ENDO-DM, ...) or a supporting feature."""

    id: str
    display: str
    kind: Literal["criterion", "supporting"]
    evidence: tuple[EvidenceSource, ...]
    lab_evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CriterionRef:
    criterion: str


@dataclass(frozen=True, slots=True)
class SupportingCount:
    at_least: int


Alternative = CriterionRef | SupportingCount


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a tier row: any of the alternatives, each begun before the limit."""

    any_of: tuple[Alternative, ...]
    onset_before: AgeLimit | None


@dataclass(frozen=True, slots=True)
class TierRow:
    row: int
    tier: Tier
    rule: str
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What to test for, by sex (rules section 4)."""

    key: str
    test_name: str
    mitigation: str
    outcome_text: str
    outcome_coding: Mapping[str, str] | None
    uses_order_code: bool


@dataclass(frozen=True, slots=True)
class Exclusion:
    value_set: ValueSetMatcher
    reason: str


@dataclass(frozen=True, slots=True)
class Suppression:
    diagnosis: ValueSetMatcher
    order_text_patterns: tuple[str, ...]
    gene_studied_loinc: str
    gene_hgnc: str
    variant_assessment_loinc: str
    absent_answer: str
    negative_interpretations: frozenset[str]


@dataclass(frozen=True, slots=True)
class Classification:
    category: Category
    source: EvidenceSource


@dataclass(slots=True)
class RuleSet:
    """Everything the core needs to screen, checked once at start."""

    id: str
    url: str
    version: str
    title: str
    aliases: SystemAliases
    criteria: tuple[Category, ...]
    supporting: tuple[Category, ...]
    supporting_onset_before: AgeLimit
    exclusions: tuple[Exclusion, ...]
    suppression: Suppression
    tiers: tuple[TierRow, ...]
    recommendations: Mapping[str, Recommendation]
    value_sets: Mapping[str, ValueSetMatcher]
    labs: Mapping[str, Any] = field(default_factory=dict)
    observation_codes: frozenset[str] = frozenset()
    lab_rules: LabRules | None = None

    def categories(self) -> Iterator[Category]:
        yield from self.criteria
        yield from self.supporting

    def category(self, category_id: str) -> Category:
        for category in self.categories():
            if category.id == category_id:
                return category
        raise KeyError(category_id)

    def classify(self, system: str, code: str) -> Classification | None:
        """Return the one category a coded diagnosis belongs to, if any."""
        canonical = self.aliases.canonical(system)
        normal = normalise_code(canonical, code)
        for category in self.categories():
            for source in category.evidence:
                if source.value_set.contains(canonical, normal):
                    return Classification(category, source)
        return None

    def exclusion(self, system: str, code: str) -> Exclusion | None:
        canonical = self.aliases.canonical(system)
        normal = normalise_code(canonical, code)
        for exclusion in self.exclusions:
            if exclusion.value_set.contains(canonical, normal):
                return exclusion
        return None

    def is_ipex_diagnosis(self, system: str, code: str) -> bool:
        canonical = self.aliases.canonical(system)
        return self.suppression.diagnosis.contains(canonical, normalise_code(canonical, code))

    def names_ordered_test(self, texts: Iterable[object]) -> bool:
        """True when an order's text or a coding's display names the IPEX workup."""
        patterns = self.suppression.order_text_patterns
        return any(
            isinstance(text, str) and any(p in text.upper() for p in patterns) for text in texts
        )

    def reads_observation_code(self, system: str, code: str) -> bool:
        """True when an Observation (or a component) with this code matters to any rule."""
        if self.aliases.canonical(system) != "http://loinc.org":
            return False
        return code in self.observation_codes

    def reads_condition_code(self, system: str, code: str) -> bool:
        """True when a Condition with this code matters to any rule."""
        return (
            self.classify(system, code) is not None
            or self.is_ipex_diagnosis(system, code)
            or self.exclusion(system, code) is not None
        )


# --- building -----------------------------------------------------------------


def _need(doc: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise RuleSetError(f"{where}: missing '{key}'")
    return doc[key]


def _age(value: Any, where: str) -> AgeLimit | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or "value" not in value or "unit" not in value:
        raise RuleSetError(f"{where}: an age needs 'value' and 'unit', got {value!r}")
    if value["unit"] not in ("a", "mo", "wk", "d"):
        raise RuleSetError(f"{where}: age unit must be one of a, mo, wk, d")
    return AgeLimit(float(value["value"]), str(value["unit"]))


def _category(
    doc: Mapping[str, Any],
    kind: Literal["criterion", "supporting"],
    value_sets: Mapping[str, ValueSetMatcher],
    where: str,
) -> Category:
    category_id = str(_need(doc, "id", where))
    where = f"{where} '{category_id}'"
    sources = []
    for i, src in enumerate(doc.get("evidence", [])):
        url = str(_need(src, "valueSet", f"{where} evidence[{i}]"))
        if url not in value_sets:
            raise RuleSetError(f"{where}: unknown ValueSet {url}")
        persistent = src.get("persistentForDays")
        sources.append(
            EvidenceSource(
                value_set=value_sets[url],
                onset_before=_age(src.get("onsetBefore"), where),
                onset_at_or_after=_age(src.get("onsetAtOrAfter"), where),
                persistent_for_days=int(persistent) if persistent is not None else None,
            )
        )
    labs = tuple(str(x) for x in doc.get("labEvidence", []))
    if not sources and not labs:
        raise RuleSetError(f"{where}: a category needs evidence")
    return Category(
        id=category_id,
        display=str(_need(doc, "display", where)),
        kind=kind,
        evidence=tuple(sources),
        lab_evidence=labs,
    )


def _tiers(docs: Sequence[Mapping[str, Any]], known: set[str]) -> tuple[TierRow, ...]:
    rows = []
    for i, doc in enumerate(docs):
        where = f"tiers[{i}]"
        tier = _need(doc, "tier", where)
        if tier not in TIERS:
            raise RuleSetError(f"{where}: tier must be one of {TIERS}, got {tier!r}")
        requirements = []
        for j, req in enumerate(_need(doc, "requirements", where)):
            alternatives: list[Alternative] = []
            for alt in _need(req, "anyOf", f"{where}.requirements[{j}]"):
                if "criterion" in alt:
                    if alt["criterion"] not in known:
                        raise RuleSetError(f"{where}: unknown criterion {alt['criterion']!r}")
                    alternatives.append(CriterionRef(str(alt["criterion"])))
                elif "supportingFeatures" in alt:
                    alternatives.append(SupportingCount(int(alt["supportingFeatures"])))
                else:
                    raise RuleSetError(f"{where}: an alternative is a criterion or a count")
            requirements.append(
                Requirement(tuple(alternatives), _age(req.get("onsetBefore"), where))
            )
        rows.append(
            TierRow(
                row=int(_need(doc, "row", where)),
                tier=tier,
                rule=str(_need(doc, "rule", where)),
                requirements=tuple(requirements),
            )
        )
    if not rows or rows[-1].tier != "low" or rows[-1].requirements:
        raise RuleSetError("tiers: the last row must be 'low' with no requirements")
    return tuple(rows)


def _recommendations(doc: Mapping[str, Any]) -> dict[str, Recommendation]:
    needed = ("male", "female", "unknown", "male-foxp3-negative")
    result = {}
    for key in needed:
        item = _need(doc, key, "recommendations")
        where = f"recommendations.{key}"
        coding = item.get("outcomeCoding")
        result[key] = Recommendation(
            key=key,
            test_name=str(_need(item, "testName", where)),
            mitigation=str(_need(item, "mitigation", where)),
            outcome_text=str(_need(item, "outcomeText", where)),
            outcome_coding=dict(coding) if coding else None,
            uses_order_code=bool(item.get("usesOrderCode", False)),
        )
    return result


def _check_one_meaning(rules: RuleSet) -> None:
    sources = [
        (category.id, source) for category in rules.categories() for source in category.evidence
    ]
    for owner, source in sources:
        for system, code in source.value_set.listed_codes():
            for other, other_source in sources:
                if other_source is source:
                    continue
                if other_source.value_set.contains(system, code):
                    raise RuleSetError(
                        f"code {system}|{code} of {source.value_set.url} ({owner}) is also in "
                        f"{other_source.value_set.url} ({other}): one code, one meaning"
                    )
            if rules.suppression.diagnosis.contains(system, code):
                raise RuleSetError(f"{system}|{code} is both evidence and an IPEX diagnosis")
    for exclusion in rules.exclusions:
        for system, code in exclusion.value_set.listed_codes():
            for owner, source in sources:
                if source.value_set.contains(system, code):
                    raise RuleSetError(
                        f"excluded code {system}|{code} ({exclusion.value_set.url}) still "
                        f"counts for {owner} via {source.value_set.url}"
                    )


def build_rule_set(
    rules_doc: Mapping[str, Any],
    value_set_docs: Sequence[Mapping[str, Any]],
    *,
    labs_doc: Mapping[str, Any] | None = None,
) -> RuleSet:
    """Build and check the rule set from its parsed documents."""
    value_sets: dict[str, ValueSetMatcher] = {}
    for doc in value_set_docs:
        try:
            matcher = compile_value_set(doc)
        except (TerminologyError, KeyError, TypeError) as exc:
            raise RuleSetError(f"ValueSet {doc.get('id')}: {exc}") from exc
        if matcher.url in value_sets:
            raise RuleSetError(f"two ValueSets share the url {matcher.url}")
        value_sets[matcher.url] = matcher

    criteria = tuple(
        _category(doc, "criterion", value_sets, "criteria")
        for doc in _need(rules_doc, "criteria", "rules")
    )
    support_doc = _need(rules_doc, "supportingFeatures", "rules")
    supporting = tuple(
        _category(doc, "supporting", value_sets, "supportingFeatures")
        for doc in _need(support_doc, "categories", "supportingFeatures")
    )
    ids = [c.id for c in (*criteria, *supporting)]
    if len(ids) != len(set(ids)):
        raise RuleSetError("criterion and feature ids must be unique")
    onset_limit = _age(_need(support_doc, "onsetBefore", "supportingFeatures"), "supporting")
    assert onset_limit is not None

    exclusions = []
    for i, doc in enumerate(rules_doc.get("exclusions", [])):
        url = str(_need(doc, "valueSet", f"exclusions[{i}]"))
        if url not in value_sets:
            raise RuleSetError(f"exclusions[{i}]: unknown ValueSet {url}")
        exclusions.append(Exclusion(value_sets[url], str(_need(doc, "reason", f"exclusions[{i}]"))))

    sup = _need(rules_doc, "suppression", "rules")
    diagnosis_url = str(_need(sup, "diagnosisValueSet", "suppression"))
    if diagnosis_url not in value_sets:
        raise RuleSetError(f"suppression: unknown ValueSet {diagnosis_url}")
    result_doc = _need(sup, "foxp3Result", "suppression")
    suppression = Suppression(
        diagnosis=value_sets[diagnosis_url],
        order_text_patterns=tuple(
            str(x).upper() for x in _need(sup, "orderTextPatterns", "suppression")
        ),
        gene_studied_loinc=str(_need(result_doc, "geneStudied", "suppression.foxp3Result")),
        gene_hgnc=normalise_code(
            "http://www.genenames.org/geneId", str(_need(result_doc, "gene", "foxp3Result"))
        ),
        variant_assessment_loinc=str(_need(result_doc, "variantAssessment", "foxp3Result")),
        absent_answer=str(_need(result_doc, "absentAnswer", "foxp3Result")),
        negative_interpretations=frozenset(
            str(x) for x in _need(result_doc, "negativeInterpretations", "foxp3Result")
        ),
    )

    alias_doc = rules_doc.get("systemAliases", {})
    if not isinstance(alias_doc, Mapping):
        raise RuleSetError("systemAliases must map a canonical system to its aliases")
    aliases = {alias: canonical for canonical, names in alias_doc.items() for alias in names}

    rules = RuleSet(
        id=str(_need(rules_doc, "id", "rules")),
        url=str(_need(rules_doc, "url", "rules")),
        version=str(_need(rules_doc, "version", "rules")),
        title=str(_need(rules_doc, "title", "rules")),
        aliases=SystemAliases(aliases),
        criteria=criteria,
        supporting=supporting,
        supporting_onset_before=onset_limit,
        exclusions=tuple(exclusions),
        suppression=suppression,
        tiers=_tiers(_need(rules_doc, "tiers", "rules"), {c.id for c in criteria}),
        recommendations=_recommendations(_need(rules_doc, "recommendations", "rules")),
        value_sets=value_sets,
        labs=dict(labs_doc or {}),
    )
    if labs_doc is not None:
        try:
            rules.lab_rules = parse_lab_rules(
                labs_doc, categories=lab_evidence_ids(tuple(rules.categories()))
            )
        except LabRulesError as exc:
            raise RuleSetError(f"lab rules (ipex-lab-rules.json): {exc}") from exc
    rules.observation_codes = frozenset(
        {
            suppression.gene_studied_loinc,
            suppression.variant_assessment_loinc,
            *(str(code) for code in rules.labs.get("readCodes", [])),
        }
    )
    _check_one_meaning(rules)
    return rules
