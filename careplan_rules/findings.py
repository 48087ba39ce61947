"""What evaluation produces: criterion matches, rule outcomes, findings and per-patient results.

These types cross layers (the engine produces outcomes, outputs render findings, every face
returns results), so they live here, below all of them. All are frozen: a result can be
shared between threads and cached without copying.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.facts import ConceptMatch, ObservationValue


class SeverityLevel(enum.IntEnum):
    """``DetectedIssue.severity``, ordered so ``max`` is the worst."""

    LOW = 0
    MODERATE = 1
    HIGH = 2

    @property
    def code(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, text: str) -> SeverityLevel:
        return cls[text.upper()]


class Indicator(enum.IntEnum):
    """CDS Hooks ``Card.indicator``, ordered so ``max`` is the most urgent."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def code(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, text: str) -> Indicator:
        return cls[text.upper()]


@dataclass(frozen=True, slots=True)
class Match:
    """A record (or a finding of another rule) that satisfied a criterion."""

    ref: str
    resource_type: str
    label: str
    evidence: tuple[ConceptMatch, ...] = ()
    date: datetime | None = None  # the record's date (latest record, "after" comparisons)
    start: datetime | None = None
    end: datetime | None = None  # None = still running
    timing: str | None = None  # current | recent (exposures)
    value: ObservationValue | None = None
    outcome: RuleOutcome | None = None  # for finding criteria
    note: str | None = None
    mme: float | None = None  # daily morphine milligram equivalents, when the dose data allow
    product: str | None = None  # repeated orders of one product share this key

    @property
    def concept_keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.evidence) or (self.ref,)


def _recency(m: Match) -> tuple[float, str]:
    when = m.date or m.start
    return (when.timestamp() if when is not None else float("-inf"), m.ref)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record a criterion looked at and did not accept, and why (for explanations)."""

    ref: str
    reason: str


@dataclass(frozen=True, slots=True)
class CriterionResult:
    name: str
    kind: str
    matches: tuple[Match, ...]
    rejected: tuple[Rejected, ...] = ()

    @property
    def holds(self) -> bool:
        return bool(self.matches)

    def daily_mme(self) -> float:
        """Total MME/day over the matches whose dose is known; each product counts once
        (its latest record), because renewals of one prescription are often all left active."""
        latest: dict[str, Match] = {}
        for m in self.matches:
            if m.mme is None:
                continue
            key = m.product or m.ref
            seen = latest.get(key)
            if seen is None or _recency(m) > _recency(seen):
                latest[key] = m
        return sum(m.mme or 0.0 for m in latest.values())

    def distinct(self) -> tuple[str, ...]:
        """Distinct drugs/concepts matched (for counts): ingredient keys, else records."""
        keys: dict[str, None] = {}
        for m in self.matches:
            for key in m.concept_keys:
                keys.setdefault(key, None)
        return tuple(keys)


@dataclass(frozen=True, slots=True)
class AppliedEscalation:
    severity: str | None
    indicator: str | None
    reason_key: str  # template key, e.g. "escalate.0.reason"
    inherited_from: str | None = None  # rule id whose grade was inherited


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """The engine's verdict for one rule and one patient."""

    rule_id: str
    fired: bool
    criteria: Mapping[str, CriterionResult]
    severity: SeverityLevel = SeverityLevel.LOW
    indicator: Indicator = Indicator.INFO
    escalations: tuple[AppliedEscalation, ...] = ()
    implicated: tuple[str, ...] = ()
    activities: tuple[int, ...] = ()  # indexes of the rule's careplan_activities that apply
    restricted: Mapping[str, frozenset[str]] = field(default_factory=dict)  # overlaps joins


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    criterion: str
    resource: str
    matched_by: str | None = None
    matched: str | None = None
    value_set: str | None = None
    field: str | None = None
    finding: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"criterion": self.criterion, "resource": self.resource}
        if self.matched_by:
            out["matchedBy"] = self.matched_by
        if self.matched is not None:
            out["matched"] = self.matched
        if self.value_set:
            out["valueSet"] = self.value_set
        if self.field:
            out["field"] = self.field
        if self.finding:
            out["finding"] = self.finding
        return out


@dataclass(frozen=True, slots=True)
class Escalated:
    reason: str
    severity: str | None = None
    indicator: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason}
        if self.severity:
            out["severity"] = self.severity
        if self.indicator:
            out["indicator"] = self.indicator
        return out


@dataclass(frozen=True, slots=True)
class ProposedActivity:
    key: str  # activity id; rules proposing the same id share one CarePlan activity
    kind: str
    title: str
    description: str | None
    code: Mapping[str, Any] | None
    scheduled_within: str | None
    rule_id: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fired for one patient, rendered for people and machines."""

    rule: str
    rule_version: str
    pack: str
    pack_version: str
    title: str
    severity: str
    indicator: str
    summary: str
    detail: str
    implicated: tuple[str, ...]
    escalations: tuple[Escalated, ...]
    evidence: tuple[EvidenceItem, ...]
    activities: tuple[ProposedActivity, ...] = ()
    detected_issue_id: str | None = None

    def sort_key(self) -> tuple[int, int, str]:
        return (-Indicator.of(self.indicator), -SeverityLevel.of(self.severity), self.rule)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "ruleVersion": self.rule_version,
            "title": self.title,
            "severity": self.severity,
            "indicator": self.indicator,
            "summary": self.summary,
            "detail": self.detail,
            "implicated": list(self.implicated),
            "escalations": [e.to_json() for e in self.escalations],
            "evidence": [e.to_json() for e in self.evidence],
        }


@dataclass(frozen=True, slots=True)
class PatientResult:
    """Everything one evaluation says about one patient of one input."""

    source: str
    patient: str
    fhir_version: str
    findings: tuple[Finding, ...] = ()
    care_plan: Mapping[str, Any] | None = None
    detected_issues: tuple[Mapping[str, Any], ...] = ()
    errors: tuple[Diagnostic, ...] = ()
    notes: tuple[Diagnostic, ...] = ()
    outcomes: tuple[RuleOutcome, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def finding(self, rule_id: str) -> Finding | None:
        return next((f for f in self.findings if f.rule == rule_id), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "patient": self.patient,
            "fhirVersion": self.fhir_version,
            "findings": [f.to_json() for f in self.findings],
            "carePlan": dict(self.care_plan) if self.care_plan is not None else None,
            "detectedIssues": [dict(d) for d in self.detected_issues],
            "errors": [e.to_json() for e in self.errors],
        }
        if self.notes:
            out["notes"] = [n.to_json() for n in self.notes]
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
