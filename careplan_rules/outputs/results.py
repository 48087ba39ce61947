"""Rule outcomes → rendered findings, DetectedIssues and the proposed CarePlan of a patient."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.engine.compiler import CompiledRule, RuleSet
from careplan_rules.facts import PatientRecord
from careplan_rules.findings import (
    Escalated,
    EvidenceItem,
    Finding,
    PatientResult,
    ProposedActivity,
    RuleOutcome,
)
from careplan_rules.model.common import CodingSpec
from careplan_rules.outputs.careplan import build_care_plan
from careplan_rules.outputs.detected_issue import build_detected_issue
from careplan_rules.outputs.ids import stable_id
from careplan_rules.outputs.templates import TemplateData, reflow_markdown, render, render_summary


def _evidence(outcome: RuleOutcome) -> tuple[EvidenceItem, ...]:
    items: list[EvidenceItem] = []
    for name, result in outcome.criteria.items():
        allowed = outcome.restricted.get(name)
        for match in result.matches:
            if allowed is not None and match.ref not in allowed:
                continue
            if match.outcome is not None:
                items.append(EvidenceItem(name, match.ref, finding=match.outcome.rule_id))
            elif match.evidence:
                for e in match.evidence:
                    items.append(EvidenceItem(name, match.ref, e.matched_by, e.matched, e.valueset, e.field))
            elif result.kind != "patient":
                items.append(EvidenceItem(name, match.ref, matched_by=result.kind))
    return tuple(items)


@functools.lru_cache(maxsize=512)  # rule models are frozen: a pack has a handful of activity codes
def _frozen_coding(code: CodingSpec) -> tuple[tuple[str, Any], ...]:
    return tuple(code.model_dump(exclude_none=True, exclude={"unverified"}).items())


def _coding(code: CodingSpec) -> dict[str, Any]:
    """The activity's code as FHIR Coding JSON (a fresh dict: outputs may be changed by callers)."""
    return dict(_frozen_coding(code))


def build_finding(
    rule: CompiledRule, outcome: RuleOutcome, record: PatientRecord, now: datetime, ruleset: RuleSet
) -> Finding:
    model = rule.source.model
    templates = rule.source.templates

    def title_of(rule_id: str) -> str:
        other = ruleset.rule(rule_id)
        return other.source.model.title if other else rule_id

    data = TemplateData(
        outcome=outcome,
        record=record,
        now=now,
        params=rule.params,
        rule_values={"rule.title": model.title, "rule.id": model.id, "rule.version": model.version},
        severity=outcome.severity.code,
        indicator=outcome.indicator.code,
        rule_title=title_of,
    )
    escalations = tuple(
        Escalated(
            render(templates[e.reason_key], data)
            + (f" (inherited from {e.inherited_from})" if e.inherited_from else ""),
            e.severity,
            e.indicator,
        )
        for e in outcome.escalations
    )
    issue_id = stable_id(rule.source.pack_id, model.id, record.patient_ref, outcome.implicated)
    activities = []
    for i in outcome.activities:
        spec = model.outputs.careplan_activities[i]
        addresses = tuple(sorted({m.ref for name in spec.addresses for m in outcome.criteria[name].matches}))
        description_tpl = templates.get(f"activity.{i}.description")
        activities.append(
            ProposedActivity(
                key=spec.id,
                kind=spec.kind,
                title=render(templates[f"activity.{i}.title"], data),
                description=reflow_markdown(render(description_tpl, data)) if description_tpl else None,
                code=_coding(spec.code) if spec.code else None,
                scheduled_within=(
                    str(rule.params.get(spec.scheduled.within[1:], spec.scheduled.within))
                    if spec.scheduled and spec.scheduled.within.startswith("$")
                    else (spec.scheduled.within if spec.scheduled else None)
                ),
                rule_id=model.id,
                addresses=addresses,
            )
        )
    return Finding(
        rule=model.id,
        rule_version=model.version,
        pack=rule.source.pack_id,
        pack_version=rule.source.pack_version,
        title=model.title,
        severity=outcome.severity.code,
        indicator=outcome.indicator.code,
        summary=render_summary(templates["summary"], data),
        detail=reflow_markdown(render(templates["detail"], data)),
        implicated=outcome.implicated,
        escalations=escalations,
        evidence=_evidence(outcome),
        activities=tuple(activities),
        detected_issue_id=issue_id,
    )


def build_patient_result(
    ruleset: RuleSet,
    record: PatientRecord,
    outcomes: Sequence[RuleOutcome],
    now: datetime,
    engine_version: str,
    notes: Sequence[Diagnostic] = (),
    keep_outcomes: bool = False,
) -> PatientResult:
    findings: list[Finding] = []
    issues = []
    for outcome in outcomes:
        if not outcome.fired:
            continue
        rule = ruleset.rule(outcome.rule_id)
        assert rule is not None
        finding = build_finding(rule, outcome, record, now, ruleset)
        findings.append(finding)
        model = rule.source.model
        reference = model.outputs.detected_issue.reference or next(
            (c.url for c in model.metadata.citations if c.url), None
        )
        issues.append(
            (
                finding.sort_key(),
                build_detected_issue(
                    finding,
                    model.outputs.detected_issue,
                    record.patient_ref,
                    now,
                    record.fhir_version,
                    reference,
                    engine_version,
                ),
            )
        )
    findings.sort(key=Finding.sort_key)
    issues.sort(key=lambda pair: pair[0])
    pack_label = ", ".join(f"{p.id} {p.version}" for p in ruleset.packs)
    care_plan = build_care_plan(findings, record.patient_ref, now, record.fhir_version, pack_label, engine_version)
    return PatientResult(
        source=record.source,
        patient=record.patient_ref,
        fhir_version=record.fhir_version,
        findings=tuple(findings),
        care_plan=care_plan,
        detected_issues=tuple(i for _, i in issues),
        errors=(),
        notes=tuple(notes),
        outcomes=tuple(outcomes) if keep_outcomes else (),
    )
