"""The rule file format (``*.rule.yaml``), format v1.

A rule names its criteria (what to look for in the patient's data), combines them in a
structured ``when`` (``all`` / ``any`` / ``not`` / ``count`` / ``overlaps``), grades the
result with a default severity and indicator plus explicit ``escalate`` modifiers whose
reasons are reported, and says what to output (summary, detail, DetectedIssue, CarePlan
activities, card extras). Durations and thresholds may refer to ``params`` as ``$name`` so
sites can tune a rule without editing it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from careplan_rules.model.common import (
    CodingSpec,
    CriterionName,
    FhirSeverity,
    Identifier,
    Indicator,
    Status,
    Strict,
    ValueSetRef,
)

ParamValue = str | int | float | bool
Number = int | float | str  # a literal or "$param"
DurationText = str  # ISO-8601 duration or "$param"

EXPOSURE_SOURCES = (
    "MedicationStatement",
    "MedicationRequest",
    "MedicationDispense",
    "MedicationAdministration",
    "Observation",
    "Condition",
)
MEDICATION_SOURCES = EXPOSURE_SOURCES[:4]
REVIEW_KINDS = ("provenance", "procedure", "task", "detected-issue", "careplan-activity")

WHEN_SCHEMA: dict[str, Any] = {
    "description": (
        "A criterion name, or one of {all: [...]}, {any: [...]}, {not: ...}, "
        "{count: {of: criterion, at_least: n}}, {overlaps: [a, b], within: duration}"
    ),
    "anyOf": [
        {"type": "string"},
        {"type": "object", "properties": {"all": {"type": "array"}}, "required": ["all"]},
        {"type": "object", "properties": {"any": {"type": "array"}}, "required": ["any"]},
        {"type": "object", "required": ["not"]},
        {"type": "object", "required": ["count"]},
        {"type": "object", "required": ["overlaps"]},
    ],
}


class Citation(Strict):
    id: str = Field(description="short key, e.g. Tanna2023-CPT")
    text: str = Field(description="bibliographic citation")
    url: str | None = None
    kind: Literal["regulatory", "guideline", "study", "case-report", "review", "dataset", "local-policy", "other"] = (
        "other"
    )


class Metadata(Strict):
    evidence_level: Literal["high", "moderate", "low", "very-low", "process"] = Field(
        description="strength of the evidence behind the rule ('process' for governance rules)"
    )
    evidence_summary: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    clinical_owner: str | None = None
    authors: list[str] = Field(default_factory=list)
    created: str | None = None
    last_reviewed: str | None = None
    review_every: str | None = Field(default=None, description="ISO-8601 duration, e.g. P1Y")
    tags: list[str] = Field(default_factory=list)
    falsepositives: list[str] = Field(default_factory=list)


class DsiUses(Strict):
    race: bool = False
    ethnicity: bool = False
    language: bool = False
    sexual_orientation: bool = False
    gender_identity: bool = False
    sex: bool = False
    date_of_birth: bool = False
    sdoh: bool = False
    health_status_assessments: bool = False


class Dsi(Strict):
    """ONC HTI-1 source attributes of an evidence-based decision support intervention."""

    type: Literal["evidence-based"] = "evidence-based"
    citation: str
    developer: str
    funding_source: str
    release_date: str
    revision_date: str | None = None
    uses: DsiUses = Field(default_factory=DsiUses)


class NumberFilter(Strict):
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None
    eq: Number | None = None


class ExposureSpec(Strict):
    """Medication exposures (and reported use) whose medication is in a value set."""

    medication: ValueSetRef
    from_: list[Literal[EXPOSURE_SOURCES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(MEDICATION_SOURCES),
        alias="from",
        description="resource types to read (Observation/Condition read reported use as text)",
    )
    lookback: DurationText | None = Field(
        default=None,
        description="also count exposures that ended within this period; without it only current ones count",
    )
    started_within: DurationText | None = Field(
        default=None, description="only exposures that started (or were first recorded) within this period"
    )


class ConditionSpec(Strict):
    code: ValueSetRef
    status: Literal["active", "any"] = Field(
        default="active", description="active: clinical status active/recurrence/relapse and not abated"
    )
    lookback: DurationText | None = Field(
        default=None, description="also count conditions that resolved within this period"
    )


class ObservationSpec(Strict):
    code: ValueSetRef
    value: NumberFilter | ValueSetRef | None = Field(
        default=None, description="numeric thresholds, or {in: valueset} for coded answers"
    )
    within: DurationText | None = Field(default=None, description="effective within this period before now")
    latest: bool = Field(default=False, description="only the most recent observation with the code counts")


class ReviewSpec(Strict):
    """A documented clinician review (Provenance, Procedure, Task, DetectedIssue mitigation…)."""

    kinds: list[Literal[REVIEW_KINDS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(REVIEW_KINDS)
    )
    code: ValueSetRef | None = Field(default=None, description="value set for Procedure/Task/CarePlan activity codes")
    by: list[Literal["Practitioner", "PractitionerRole"]] = Field(
        default_factory=lambda: ["Practitioner", "PractitionerRole"]  # type: ignore[arg-type]
    )
    roles: list[str] = Field(
        default_factory=lambda: ["verifier", "attester", "author"],
        description="Provenance agent roles that count",
    )
    targets: list[CriterionName] = Field(
        default_factory=list,
        description="Provenance/DetectedIssue must point at a resource matched by one of these criteria",
    )
    after: CriterionName | None = Field(
        default=None, description="dated on or after the latest record matched by this criterion"
    )
    within: DurationText | None = None


class CarePlanSpec(Strict):
    status: list[str] = Field(default_factory=lambda: ["active", "draft", "on-hold"])


class PatientSpec(Strict):
    age: NumberFilter | None = None
    gender: list[Literal["male", "female", "other", "unknown"]] | None = None


class FindingSpec(Strict):
    rules: list[Identifier] = Field(description="ids of other rules of the pack whose findings count")


class Criterion(Strict):
    description: str | None = None
    exposure: ExposureSpec | None = None
    condition: ConditionSpec | None = None
    observation: ObservationSpec | None = None
    review: ReviewSpec | None = None
    careplan: CarePlanSpec | None = None
    patient: PatientSpec | None = None
    finding: FindingSpec | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Criterion:
        kinds = [k for k in CRITERION_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a criterion needs exactly one of "
                + ", ".join(CRITERION_KINDS)
                + (f" (found {', '.join(kinds)})" if kinds else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in CRITERION_KINDS if getattr(self, k) is not None)


CRITERION_KINDS = ("exposure", "condition", "observation", "review", "careplan", "patient", "finding")


class Escalation(Strict):
    when: Any = Field(default=None, json_schema_extra=WHEN_SCHEMA)
    inherit: CriterionName | None = Field(
        default=None, description="take the worst severity/indicator of the findings a finding-criterion matched"
    )
    severity: FhirSeverity | None = None
    indicator: Indicator | None = None
    reason: str = Field(description="why the grade changed; a template, shown in the explanation")

    @model_validator(mode="after")
    def _shape(self) -> Escalation:
        if (self.when is None) == (self.inherit is None):
            raise ValueError("an escalation needs either 'when' or 'inherit'")
        if self.when is not None and self.severity is None and self.indicator is None:
            raise ValueError("an escalation with 'when' must set 'severity' and/or 'indicator'")
        return self


class DetectedIssueSpec(Strict):
    code: Literal["NHP", "DRG", "DUPTHPY", "NONRX", "ALGY", "FOOD"] | CodingSpec | None = Field(
        default=None, description="v3 ActCode shorthand (NHP natural product, DRG drug-drug) or a coding"
    )
    implicated: list[CriterionName] | None = Field(
        default=None, description="criteria whose resources are implicated (default: all positive ones)"
    )
    reference: str | None = Field(default=None, description="URL of the authority for the issue")


class Scheduled(Strict):
    within: DurationText


class ActivitySpec(Strict):
    id: Identifier = Field(description="stable key; rules proposing the same id share one activity")
    kind: Literal["ServiceRequest", "Task", "MedicationRequest", "CommunicationRequest", "Appointment"] = (
        "ServiceRequest"
    )
    code: CodingSpec | None = None
    title: str
    description: str | None = None
    scheduled: Scheduled | None = None
    addresses: list[CriterionName] = Field(
        default_factory=list, description="condition criteria whose matches the activity addresses"
    )
    when: Any = Field(default=None, json_schema_extra=WHEN_SCHEMA)


class Link(Strict):
    label: str
    url: str


class CardSpec(Strict):
    override_reasons: list[CodingSpec] | None = None
    links: list[Link] = Field(default_factory=list)
    suggestion_label: str | None = None


class Outputs(Strict):
    summary: str = Field(description="one sentence, at most 140 characters in the worst case; a template")
    detail: str = Field(description="markdown; a template")
    detected_issue: DetectedIssueSpec = Field(default_factory=DetectedIssueSpec)
    careplan_activities: list[ActivitySpec] = Field(default_factory=list)
    card: CardSpec = Field(default_factory=CardSpec)


class RuleModel(Strict):
    api_version: Literal["careplan-rules/v1"] = Field(alias="apiVersion")
    kind: Literal["Rule"]
    id: Identifier
    version: str
    status: Status
    title: str
    description: str
    metadata: Metadata
    dsi: Dsi | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    criteria: dict[CriterionName, Criterion]
    when: Any = Field(json_schema_extra=WHEN_SCHEMA)
    severity: FhirSeverity
    indicator: Indicator
    escalate: list[Escalation] = Field(default_factory=list)
    outputs: Outputs
