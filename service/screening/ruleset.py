"""The screening rules as typed data, built from the documents in ``fhir_profiles/``.

:func:`build_rule_set` takes the parsed rule table, lab rules and ValueSets (it reads
no files). The rule table is read through its declared schema
(:mod:`.rule_documents`), then cross-checked here: every referenced ValueSet and
explaining cause exists, every tier names known criteria and a known recommendation
kind, each narrower criterion (ENT-AIE, DERM-ERY) is part of a broader one, and no
code belongs to two categories ("one code, one meaning"). A problem raises
:class:`RuleSetError` naming the field. The rule set is immutable once built.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from .dates import AgeLimit, InvalidDate, date_after
from .lab_rules import LabRules, LabRulesError, parse_lab_rules
from .rule_documents import (
    SOURCE_ATTRIBUTE_ELEMENTS,
    AgeDoc,
    CategoryDoc,
    CauseDoc,
    PublicationDoc,
    RecommendationDoc,
    ScreeningRulesDoc,
    TierRowDoc,
    WindowBoundDoc,
)
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

#: The variants every recommendation kind may have, and the ones IPEX must have.
RECOMMENDATION_VARIANTS = frozenset({"male", "female", "unknown", "male-foxp3-negative", "any"})
_IPEX_VARIANTS = ("male", "female", "unknown", "male-foxp3-negative")


class RuleSetError(ValueError):
    """The rule documents are inconsistent; the service must not start."""


@dataclass(frozen=True, slots=True)
class WindowBound:
    """One edge of a cause's window: the diarrhea's start or end, shifted by an offset."""

    anchor: Literal["diarrheaStart", "diarrheaEnd"]
    offset_value: float
    offset_unit: str

    def date_from(self, anchor_date: dt.date) -> dt.date:
        try:
            return date_after(anchor_date, self.offset_value, self.offset_unit)
        except InvalidDate:
            return dt.date.max if self.offset_value > 0 else dt.date.min


@dataclass(frozen=True, slots=True)
class ExplainingCause:
    """A coded cause that explains a nonspecific diarrhea code inside its window."""

    id: str
    display: str
    value_set: ValueSetMatcher
    start: WindowBound | None
    end: WindowBound | None
    window_text: str


@dataclass(frozen=True, slots=True)
class EvidenceSource:
    """One ValueSet that gives evidence for a category, with its conditions."""

    value_set: ValueSetMatcher
    onset_before: AgeLimit | None = None
    onset_at_or_after: AgeLimit | None = None
    persistent_for_days: int | None = None
    explained_by: tuple[ExplainingCause, ...] = ()

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
    """A triad criterion (ENT, ENDO-DM, ...) or a supporting feature.

    A narrower criterion (ENT-AIE, DERM-ERY) names the criterion it is part of: its
    evidence is evidence of that one too.
    """

    id: str
    display: str
    kind: Literal["criterion", "supporting"]
    evidence: tuple[EvidenceSource, ...]
    lab_evidence: tuple[str, ...] = ()
    part_of: Category | None = None


@dataclass(frozen=True, slots=True)
class CriterionRef:
    criterion: str


@dataclass(frozen=True, slots=True)
class SupportingCount:
    at_least: int


Alternative = CriterionRef | SupportingCount


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a tier row: any of the alternatives, begun inside the age limits."""

    any_of: tuple[Alternative, ...]
    onset_before: AgeLimit | None
    onset_at_or_after: AgeLimit | None = None


@dataclass(frozen=True, slots=True)
class TierRow:
    row: int
    tier: Tier
    rule: str
    requirements: tuple[Requirement, ...]
    recommend: str | None = None
    recommend_also: str | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What to test for, for one recommendation kind and sex (rules section 4)."""

    kind: str
    variant: str
    test_name: str
    mitigation: str
    outcome_text: str
    outcome_coding: Mapping[str, str] | None
    uses_order_code: bool

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.variant}"


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


@dataclass(frozen=True, slots=True)
class _Meaning:
    """Everything the rules say of one code."""

    classification: Classification | None
    exclusion: Exclusion | None
    causes: tuple[ExplainingCause, ...]
    diagnosis: bool


_MEANINGS_KEPT = 65_536


@dataclass(frozen=True, slots=True)
class ExplanationPolicy:
    """Which causes may explain a diarrhea code: their verification status and windows."""

    verification_statuses: frozenset[str]
    without_status: bool
    causes: tuple[ExplainingCause, ...]

    def accepts_status(self, status: str | None) -> bool:
        return self.without_status if status is None else status in self.verification_statuses


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything the core needs to screen, checked once at start."""

    id: str
    url: str
    version: str
    title: str
    date: str
    publication: PublicationDoc  # who made the rules, from what evidence (not screened on)
    aliases: SystemAliases
    criteria: tuple[Category, ...]
    supporting: tuple[Category, ...]
    supporting_onset_before: AgeLimit
    explanation: ExplanationPolicy
    exclusions: tuple[Exclusion, ...]
    suppression: Suppression
    tiers: tuple[TierRow, ...]
    recommendations: Mapping[str, Mapping[str, Recommendation]]
    value_sets: Mapping[str, ValueSetMatcher]
    lab_rules: LabRules | None
    observation_codes: frozenset[str]
    # What each (system, code) means, remembered: a record repeats its codes, and an
    # ICD family match walks every source. Bounded; never part of the rules' identity.
    _meanings: dict[tuple[str, str], _Meaning] = field(
        default_factory=dict, repr=False, compare=False)
    _by_id: dict[str, Category] = field(default_factory=dict, repr=False, compare=False)

    def _meaning(self, system: str, code: str) -> _Meaning:
        key = (system, code)
        found = self._meanings.get(key)
        if found is None:
            canonical = self.aliases.canonical(system)
            normal = normalise_code(canonical, code)
            found = _Meaning(
                classification=self._classify(canonical, normal),
                exclusion=next((x for x in self.exclusions
                                if x.value_set.contains(canonical, normal)), None),
                causes=tuple(c for c in self.explanation.causes
                             if c.value_set.contains(canonical, normal)),
                diagnosis=self.suppression.diagnosis.contains(canonical, normal),
            )
            if len(self._meanings) >= _MEANINGS_KEPT:
                self._meanings.clear()
            self._meanings[key] = found
        return found

    def _classify(self, canonical: str, normal: str) -> Classification | None:
        for category in self.categories():
            for source in category.evidence:
                if source.value_set.contains(canonical, normal):
                    return Classification(category, source)
        return None

    def categories(self) -> Iterator[Category]:
        yield from self.criteria
        yield from self.supporting

    def category(self, category_id: str) -> Category:
        if not self._by_id:
            self._by_id.update((c.id, c) for c in self.categories())
        return self._by_id[category_id]

    def classify(self, system: str, code: str) -> Classification | None:
        """Return the one category a coded diagnosis belongs to, if any."""
        return self._meaning(system, code).classification

    def exclusion(self, system: str, code: str) -> Exclusion | None:
        return self._meaning(system, code).exclusion

    def causes(self, system: str, code: str) -> tuple[ExplainingCause, ...]:
        """The explaining causes a coded diagnosis is (celiac disease, an infection, ...)."""
        return self._meaning(system, code).causes

    def is_ipex_diagnosis(self, system: str, code: str) -> bool:
        return self._meaning(system, code).diagnosis

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
        meaning = self._meaning(system, code)
        return (meaning.classification is not None or meaning.diagnosis
                or meaning.exclusion is not None or bool(meaning.causes))

    def recommendation(self, kind: str, sex: Sex, *, foxp3_negative: bool) -> Recommendation:
        """The recommendation of a row's kind for this sex (rules section 4)."""
        variants = self.recommendations[kind]
        if sex == "male":
            wanted = ("male-foxp3-negative", "any") if foxp3_negative else ("male", "any")
        else:
            wanted = (sex, "any")
        for variant in wanted:
            if variant in variants:
                return variants[variant]
        raise KeyError(f"{kind}/{sex}")  # the build checks every kind has 'any' or all sexes


# --- building -----------------------------------------------------------------


def _age(doc: AgeDoc | None) -> AgeLimit | None:
    return AgeLimit(doc.value, doc.unit) if doc is not None else None


def _value_set(url: str, value_sets: Mapping[str, ValueSetMatcher], where: str) -> ValueSetMatcher:
    if url not in value_sets:
        raise RuleSetError(f"{where}: unknown ValueSet {url}")
    return value_sets[url]


def _bound(doc: WindowBoundDoc | None) -> WindowBound | None:
    if doc is None:
        return None
    return WindowBound(doc.anchor, doc.offset.value, doc.offset.unit)


def _cause(doc: CauseDoc, value_sets: Mapping[str, ValueSetMatcher]) -> ExplainingCause:
    where = f"explainedDiarrhea.causes '{doc.id}'"
    if doc.window.start is None and doc.window.end is None:
        raise RuleSetError(f"{where}: a window needs 'from', 'to' or both")
    return ExplainingCause(
        id=doc.id,
        display=doc.display,
        value_set=_value_set(doc.value_set, value_sets, where),
        start=_bound(doc.window.start),
        end=_bound(doc.window.end),
        window_text=doc.window_text,
    )


def _category(
    doc: CategoryDoc,
    kind: Literal["criterion", "supporting"],
    value_sets: Mapping[str, ValueSetMatcher],
    causes: Mapping[str, ExplainingCause],
    parents: Mapping[str, Category],
    where: str,
) -> Category:
    where = f"{where} '{doc.id}'"
    sources = []
    for i, src in enumerate(doc.evidence):
        at = f"{where} evidence[{i}]"
        unknown = [c for c in src.explained_by if c not in causes]
        if unknown:
            raise RuleSetError(f"{at}: unknown explaining cause {unknown}")
        sources.append(EvidenceSource(
            value_set=_value_set(src.value_set, value_sets, at),
            onset_before=_age(src.onset_before),
            onset_at_or_after=_age(src.onset_at_or_after),
            persistent_for_days=src.persistent_for_days,
            explained_by=tuple(causes[c] for c in src.explained_by),
        ))
    if not sources and not doc.lab_evidence:
        raise RuleSetError(f"{where}: a category needs evidence")
    parent = None
    if doc.part_of is not None:
        if kind != "criterion":
            raise RuleSetError(f"{where}: only a criterion can be part of another")
        parent = parents.get(doc.part_of)
        if parent is None:
            raise RuleSetError(
                f"{where}: partOf '{doc.part_of}' must be a broader criterion listed before it"
            )
    return Category(doc.id, doc.display, kind, tuple(sources), doc.lab_evidence, parent)


def _tiers(
    docs: Sequence[TierRowDoc], known: set[str], kinds: Mapping[str, Any]
) -> tuple[TierRow, ...]:
    rows = []
    for i, doc in enumerate(docs):
        where = f"tiers[{i}] (row {doc.row})"
        if doc.row != i + 1:
            raise RuleSetError(f"{where}: rows must be numbered 1, 2, 3, ... in order")
        if doc.tier == "low":
            if doc.recommend is not None:
                raise RuleSetError(f"{where}: a low row recommends nothing")
        elif doc.recommend not in kinds:
            raise RuleSetError(
                f"{where}: recommend must be one of {sorted(kinds)}, got {doc.recommend!r}"
            )
        requirements = []
        for j, req in enumerate(doc.requirements):
            alternatives: list[Alternative] = []
            for alt in req.any_of:
                if (alt.criterion is None) == (alt.supporting_features is None):
                    raise RuleSetError(f"{where}.requirements[{j}]: an alternative is a "
                                       "criterion or a count of supporting features")
                if alt.criterion is not None:
                    if alt.criterion not in known:
                        raise RuleSetError(f"{where}: unknown criterion {alt.criterion!r}")
                    alternatives.append(CriterionRef(alt.criterion))
                else:
                    assert alt.supporting_features is not None
                    alternatives.append(SupportingCount(alt.supporting_features))
            requirements.append(Requirement(
                tuple(alternatives), _age(req.onset_before), _age(req.onset_at_or_after)
            ))
        rows.append(TierRow(doc.row, doc.tier, doc.rule, tuple(requirements),
                            doc.recommend, doc.recommend_also))
    if rows[-1].tier != "low" or rows[-1].requirements:
        raise RuleSetError("tiers: the last row must be 'low' with no requirements")
    ranks = [TIERS.index(row.tier) for row in rows]
    if ranks != sorted(ranks, reverse=True):
        raise RuleSetError("tiers: rows must run from high to low (the first match wins)")
    return tuple(rows)


def _recommendation(kind: str, variant: str, doc: RecommendationDoc) -> Recommendation:
    coding = doc.outcome_coding
    return Recommendation(
        kind=kind,
        variant=variant,
        test_name=doc.test_name,
        mitigation=doc.mitigation,
        outcome_text=doc.outcome_text,
        outcome_coding=coding.model_dump(exclude_none=True) if coding else None,
        uses_order_code=doc.uses_order_code,
    )


def _recommendations(
    doc: Mapping[str, Mapping[str, RecommendationDoc]],
) -> dict[str, dict[str, Recommendation]]:
    if "IPEX" not in doc:
        raise RuleSetError("recommendations: the IPEX kind is required")
    result: dict[str, dict[str, Recommendation]] = {}
    for kind, variants in doc.items():
        where = f"recommendations.{kind}"
        unknown = set(variants) - RECOMMENDATION_VARIANTS
        if unknown:
            raise RuleSetError(f"{where}: unknown variants {sorted(unknown)}")
        if kind == "IPEX":
            missing = [v for v in _IPEX_VARIANTS if v not in variants]
            if missing:
                raise RuleSetError(f"{where}: missing {missing}")
        elif "any" not in variants:
            raise RuleSetError(f"{where}: needs an 'any' variant")
        if "male" in variants and "male-foxp3-negative" not in variants:
            raise RuleSetError(f"{where}: a 'male' variant needs a 'male-foxp3-negative' one "
                               "(after a negative FOXP3 result 'FOXP3 first' is wrong)")
        result[kind] = {v: _recommendation(kind, v, item) for v, item in variants.items()}
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


def _lab_evidence_owners(categories: Sequence[Category]) -> dict[str, str]:
    """Map each ``labEvidence`` id of the screening rules to its category's id."""
    found: dict[str, str] = {}
    for category in categories:
        for evidence_id in category.lab_evidence:
            if evidence_id in found:
                raise RuleSetError(
                    f"labEvidence '{evidence_id}' is in both {found[evidence_id]} and "
                    f"{category.id}"
                )
            found[evidence_id] = category.id
    return found


def _publication(doc: ScreeningRulesDoc) -> PublicationDoc:
    """The publication facts, checked against the rule set they describe."""
    publication = doc.publication
    elements = [e.element for e in publication.data_elements]
    if tuple(elements) != SOURCE_ATTRIBUTE_ELEMENTS:
        raise RuleSetError("publication.dataElements: say once for each of "
                           f"{list(SOURCE_ATTRIBUTE_ELEMENTS)}, in that order (the "
                           "regulation's), whether it is used")
    latest = publication.revisions[-1]
    if (latest.version, latest.date) != (doc.version, doc.date):
        raise RuleSetError(f"publication.revisions: the last revision must be this rule set's "
                           f"version {doc.version} of {doc.date}, got {latest.version} of "
                           f"{latest.date}")
    if publication.revisions[0].date != publication.release_date:
        raise RuleSetError("publication.releaseDate must be the date of the first revision")
    ids = [c.id for c in publication.citations]
    if len(set(ids)) != len(ids):
        raise RuleSetError("publication.citations: ids must be unique")
    return publication


def _parse(rules_doc: Mapping[str, Any]) -> ScreeningRulesDoc:
    try:
        return ScreeningRulesDoc.model_validate(rules_doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:8]
        )
        raise RuleSetError(f"the rule table does not match its schema: {problems}") from None


def build_rule_set(
    rules_doc: Mapping[str, Any],
    value_set_docs: Sequence[Mapping[str, Any]],
    *,
    labs_doc: Mapping[str, Any] | None = None,
) -> RuleSet:
    """Build and check the rule set from its parsed documents."""
    doc = _parse(rules_doc)
    value_sets: dict[str, ValueSetMatcher] = {}
    for vs_doc in value_set_docs:
        try:
            matcher = compile_value_set(vs_doc)
        except (TerminologyError, KeyError, TypeError) as exc:
            raise RuleSetError(f"ValueSet {vs_doc.get('id')}: {exc}") from exc
        if matcher.url in value_sets:
            raise RuleSetError(f"two ValueSets share the url {matcher.url}")
        value_sets[matcher.url] = matcher

    explained = doc.explained_diarrhea
    causes = {c.id: _cause(c, value_sets) for c in explained.causes}
    if len(causes) != len(explained.causes):
        raise RuleSetError("explainedDiarrhea.causes: ids must be unique")

    criteria: list[Category] = []
    for item in doc.criteria:
        parents = {c.id: c for c in criteria if c.part_of is None}
        criteria.append(_category(item, "criterion", value_sets, causes, parents, "criteria"))
    supporting = tuple(
        _category(item, "supporting", value_sets, causes, {}, "supportingFeatures")
        for item in doc.supporting_features.categories
    )
    ids = [c.id for c in (*criteria, *supporting)]
    if len(ids) != len(set(ids)):
        raise RuleSetError("criterion and feature ids must be unique")

    exclusions = tuple(
        Exclusion(_value_set(x.value_set, value_sets, f"exclusions[{i}]"), x.reason)
        for i, x in enumerate(doc.exclusions)
    )
    sup = doc.suppression
    result = sup.foxp3_result
    suppression = Suppression(
        diagnosis=_value_set(sup.diagnosis_value_set, value_sets, "suppression"),
        order_text_patterns=tuple(p.upper() for p in sup.order_text_patterns),
        gene_studied_loinc=result.gene_studied,
        gene_hgnc=normalise_code("http://www.genenames.org/geneId", result.gene),
        variant_assessment_loinc=result.variant_assessment,
        absent_answer=result.absent_answer,
        negative_interpretations=frozenset(result.negative_interpretations),
    )
    recommendations = _recommendations(doc.recommendations)

    lab_rules = None
    if labs_doc is not None:
        try:
            lab_rules = parse_lab_rules(
                labs_doc, categories=_lab_evidence_owners((*criteria, *supporting))
            )
        except LabRulesError as exc:
            raise RuleSetError(f"lab rules (ipex-lab-rules.json): {exc}") from exc

    rules = RuleSet(
        id=doc.id,
        url=doc.url,
        version=doc.version,
        title=doc.title,
        date=doc.date,
        publication=_publication(doc),
        aliases=SystemAliases({
            alias: canonical for canonical, names in doc.system_aliases.items() for alias in names
        }),
        criteria=tuple(criteria),
        supporting=supporting,
        supporting_onset_before=AgeLimit(doc.supporting_features.onset_before.value,
                                         doc.supporting_features.onset_before.unit),
        explanation=ExplanationPolicy(
            verification_statuses=frozenset(explained.cause_verification_status),
            without_status=explained.cause_without_verification_status,
            causes=tuple(causes.values()),
        ),
        exclusions=exclusions,
        suppression=suppression,
        tiers=_tiers(doc.tiers, {c.id for c in criteria}, recommendations),
        recommendations=recommendations,
        value_sets=value_sets,
        lab_rules=lab_rules,
        observation_codes=frozenset({
            suppression.gene_studied_loinc,
            suppression.variant_assessment_loinc,
            *(lab_rules.read_codes if lab_rules is not None else ()),
        }),
    )
    _check_one_meaning(rules)
    return rules
