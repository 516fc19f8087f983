"""The declared schema of ``fhir_profiles/rules/ipex-screening-rules.json``.

Pydantic reads the document and reports every misspelt or missing field with its
path; :mod:`.ruleset` then turns it into the typed, cross-checked rule set. Nothing
here knows what a criterion means: these are the shapes an informaticist edits.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AgeDoc(_Strict):
    value: float
    unit: Literal["a", "mo", "wk", "d"]


class OffsetDoc(_Strict):
    """A signed duration: ``-30 d`` is thirty days before the anchor."""

    value: float
    unit: Literal["a", "mo", "wk", "d"]


class EvidenceDoc(_Strict):
    value_set: str = Field(alias="valueSet")
    onset_before: AgeDoc | None = Field(default=None, alias="onsetBefore")
    onset_at_or_after: AgeDoc | None = Field(default=None, alias="onsetAtOrAfter")
    persistent_for_days: int | None = Field(default=None, alias="persistentForDays", ge=1)
    explained_by: tuple[str, ...] = Field(default=(), alias="explainedBy")


class CategoryDoc(_Strict):
    id: str = Field(min_length=1)
    display: str = Field(min_length=1)
    part_of: str | None = Field(default=None, alias="partOf")
    evidence: tuple[EvidenceDoc, ...] = ()
    lab_evidence: tuple[str, ...] = Field(default=(), alias="labEvidence")


class SupportingDoc(_Strict):
    onset_before: AgeDoc = Field(alias="onsetBefore")
    categories: tuple[CategoryDoc, ...] = Field(min_length=1)


class WindowBoundDoc(_Strict):
    anchor: Literal["diarrheaStart", "diarrheaEnd"]
    offset: OffsetDoc


class WindowDoc(_Strict):
    """Where a cause's onset must lie, relative to the diarrhea it explains (inclusive)."""

    start: WindowBoundDoc | None = Field(default=None, alias="from")
    end: WindowBoundDoc | None = Field(default=None, alias="to")


class CauseDoc(_Strict):
    id: str = Field(min_length=1)
    display: str = Field(min_length=1)
    value_set: str = Field(alias="valueSet")
    window: WindowDoc
    window_text: str = Field(alias="windowText", min_length=1)


class ExplainedDiarrheaDoc(_Strict):
    note: str = ""
    cause_verification_status: tuple[str, ...] = Field(alias="causeVerificationStatus")
    cause_without_verification_status: bool = Field(alias="causeWithoutVerificationStatus")
    causes: tuple[CauseDoc, ...] = Field(min_length=1)


class ExclusionDoc(_Strict):
    value_set: str = Field(alias="valueSet")
    reason: str = Field(min_length=1)


class Foxp3ResultDoc(_Strict):
    gene_studied: str = Field(alias="geneStudied")
    gene: str
    variant_assessment: str = Field(alias="variantAssessment")
    absent_answer: str = Field(alias="absentAnswer")
    negative_interpretations: tuple[str, ...] = Field(alias="negativeInterpretations")


class SuppressionDoc(_Strict):
    diagnosis_value_set: str = Field(alias="diagnosisValueSet")
    order_text_patterns: tuple[str, ...] = Field(alias="orderTextPatterns", min_length=1)
    order_text_patterns_note: str = Field(default="", alias="orderTextPatternsNote")
    foxp3_result: Foxp3ResultDoc = Field(alias="foxp3Result")


class AlternativeDoc(_Strict):
    criterion: str | None = None
    supporting_features: int | None = Field(default=None, alias="supportingFeatures", ge=1)


class RequirementDoc(_Strict):
    any_of: tuple[AlternativeDoc, ...] = Field(alias="anyOf", min_length=1)
    onset_before: AgeDoc | None = Field(default=None, alias="onsetBefore")
    onset_at_or_after: AgeDoc | None = Field(default=None, alias="onsetAtOrAfter")


class TierRowDoc(_Strict):
    row: int = Field(ge=1)
    tier: Literal["low", "moderate", "high"]
    recommend: str | None
    recommend_also: str | None = Field(default=None, alias="recommendAlso")
    rule: str = Field(min_length=1)
    requirements: tuple[RequirementDoc, ...]


class CodingDoc(_Strict):
    system: str
    code: str
    display: str | None = None


class RecommendationDoc(_Strict):
    test_name: str = Field(alias="testName", min_length=1)
    mitigation: str = Field(min_length=1)
    outcome_text: str = Field(alias="outcomeText", min_length=1)
    outcome_coding: CodingDoc | None = Field(default=None, alias="outcomeCoding")
    uses_order_code: bool = Field(default=False, alias="usesOrderCode")


class DeveloperDoc(_Strict):
    name: str = Field(min_length=1)
    role: str = Field(min_length=1)
    url: str = Field(min_length=1)


class RevisionDoc(_Strict):
    version: str = Field(min_length=1)
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    summary: str = Field(min_length=1)


class CitationDoc(_Strict):
    id: str = Field(min_length=1)
    citation: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://")
    supports: str = Field(min_length=1)


#: The patient data elements 45 CFR 170.315(b)(11)(iv)(A)(5)-(13) asks about, in its order.
DataElement = Literal[
    "race", "ethnicity", "language", "sexual orientation", "gender identity", "sex",
    "date of birth", "social determinants of health", "health status assessments",
]
SOURCE_ATTRIBUTE_ELEMENTS: tuple[str, ...] = get_args(DataElement)


class DataElementDoc(_Strict):
    element: DataElement
    use: Literal["input", "output", "input and output", "not used"]
    explanation: str = Field(min_length=1)


class PublicationDoc(_Strict):
    """Who made the rules, from which evidence, when, and which patient data they use.

    The source of the evidence-based decision support source attributes (45 CFR
    170.315(b)(11)(iv)(A)): the FHIR Library and the page are generated from it.
    """

    library: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    intended_use: str = Field(alias="intendedUse", min_length=1)
    developer: DeveloperDoc
    funding: str = Field(min_length=1)
    release_date: str = Field(alias="releaseDate", pattern=r"^\d{4}-\d{2}-\d{2}$")
    revisions: tuple[RevisionDoc, ...] = Field(min_length=1)
    citations: tuple[CitationDoc, ...] = Field(min_length=1)
    data_elements: tuple[DataElementDoc, ...] = Field(alias="dataElements")


class ScreeningRulesDoc(_Strict):
    """The whole rule table, as the informaticist writes it."""

    id: str = Field(min_length=1)
    url: str = Field(min_length=1)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    date: str = Field(min_length=1)
    source: str = ""
    publication: PublicationDoc
    system_aliases: dict[str, tuple[str, ...]] = Field(default_factory=dict, alias="systemAliases")
    criteria: tuple[CategoryDoc, ...] = Field(min_length=1)
    supporting_features: SupportingDoc = Field(alias="supportingFeatures")
    explained_diarrhea: ExplainedDiarrheaDoc = Field(alias="explainedDiarrhea")
    exclusions: tuple[ExclusionDoc, ...] = ()
    suppression: SuppressionDoc
    tiers: tuple[TierRowDoc, ...] = Field(min_length=1)
    recommendations: dict[str, dict[str, RecommendationDoc]]


# --- fhir_profiles/rules/ipex-lab-rules.json -------------------------------------------


class ThresholdDoc(_Strict):
    op: Literal[">", ">=", "<", "<="]
    value: float


class AgeBandDoc(_Strict):
    start: AgeDoc = Field(alias="from")
    threshold: ThresholdDoc | None = None
    label: str = Field(min_length=1)


class ScaleDoc(_Strict):
    name: str | None = None
    unit: str = Field(min_length=1)
    threshold: ThresholdDoc | None = None
    by_age: tuple[AgeBandDoc, ...] = Field(default=(), alias="byAge")


class LabDoc(_Strict):
    id: str = Field(min_length=1)
    display: str = Field(min_length=1)
    codes: tuple[str, ...] = Field(min_length=1)
    positivity: Literal["fixed", "ordered", "shown"]
    direction: Literal["above", "below", "both"]
    scales: tuple[ScaleDoc, ...]
    convert_between_scales: bool = Field(default=True, alias="convertBetweenScales")
    molar_mass: float | None = Field(default=None, alias="molarMass", gt=0)
    unit_aliases: dict[str, str] = Field(default_factory=dict, alias="unitAliases")
    counts_from_age: AgeDoc | None = Field(default=None, alias="countsFromAge")
    part: str | None = None
    otherwise: str | None = None
    evidence: str | None = None
    note: str = ""
    source: str = ""


class CombinationDoc(_Strict):
    id: str = Field(min_length=1)
    display: str = Field(min_length=1)
    needs: tuple[str, ...] = Field(min_length=1)
    missing: str = Field(min_length=1)
    yields_to_coded_evidence: bool = Field(default=False, alias="yieldsToCodedEvidence")
    note: str = ""


class InterpretationSideDoc(_Strict):
    positive: tuple[str, ...]
    negative: tuple[str, ...]


class InterpretationDoc(_Strict):
    systems: tuple[str, ...] = Field(min_length=1)
    above: InterpretationSideDoc
    below: InterpretationSideDoc


class CodedValuesDoc(_Strict):
    positive: tuple[CodingDoc, ...]
    negative: tuple[CodingDoc, ...]
    positive_text: tuple[str, ...] = Field(alias="positiveText")
    negative_text: tuple[str, ...] = Field(alias="negativeText")


class LabRulesDoc(_Strict):
    """The lab definitions (rules section 2, Labs), as the informaticist writes them."""

    id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    title: str = ""
    source: str = ""
    read_codes: tuple[str, ...] = Field(alias="readCodes")
    unit_aliases: dict[str, str] = Field(default_factory=dict, alias="unitAliases")
    interpretation: InterpretationDoc
    coded_values: CodedValuesDoc = Field(alias="codedValues")
    combinations: tuple[CombinationDoc, ...] = ()
    labs: tuple[LabDoc, ...] = Field(min_length=1)
