"""The proposed ``CarePlan`` (status draft, intent proposal) built from the rules' activities.

One plan per patient collects the activities of every finding; two rules proposing the same
activity id share one activity that lists both issues as reasons. R4 and R5 differ: R4 puts
each activity in ``activity.detail``; R5 removed ``detail``, so each activity becomes a
contained request (ServiceRequest, Task, MedicationRequest…, status draft, intent proposal)
referenced from ``activity.plannedActivityReference``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from careplan_rules.findings import Finding, ProposedActivity
from careplan_rules.outputs.ids import stable_id
from careplan_rules.temporal import iso, parse_duration


def _code(activity: ProposedActivity) -> dict[str, Any]:
    cc: dict[str, Any] = {"text": activity.title}
    if activity.code:
        coding = {k: v for k, v in activity.code.items() if k in ("system", "code", "display") and v}
        cc = {"coding": [coding], "text": activity.title}
    return cc


def _period(activity: ProposedActivity, now: datetime) -> dict[str, str] | None:
    if not activity.scheduled_within:
        return None
    # the time zone is part of the key: equal instants in two zones are equal datetimes, but
    # "P1M" after 23:30 on 31 January is another instant in New York than in UTC
    start, end = _window(activity.scheduled_within, now, now.tzinfo)
    return {"start": start, "end": end}


@functools.lru_cache(maxsize=256)  # a pack has a handful ("P14D"), and a call one now for all its plans
def _window(within: str, now: datetime, _zone: object) -> tuple[str, str]:
    return iso(now), iso(parse_duration(within).after(now))


def build_care_plan(
    findings: Sequence[Finding],
    patient_ref: str,
    now: datetime,
    version: str,
    pack_label: str,
    engine_version: str,
) -> Mapping[str, Any] | None:
    """Assemble the plan; None when no finding proposes an activity."""
    merged: dict[str, tuple[ProposedActivity, list[str], list[str]]] = {}
    for finding in findings:
        for act in finding.activities:
            entry = merged.setdefault(act.key, (act, [], []))
            if finding.detected_issue_id and f"DetectedIssue/{finding.detected_issue_id}" not in entry[1]:
                entry[1].append(f"DetectedIssue/{finding.detected_issue_id}")
            for cond in act.addresses:
                if cond not in entry[2]:
                    entry[2].append(cond)
    if not merged:
        return None
    plan_id = stable_id("careplan", pack_label, patient_ref, sorted(merged))
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": plan_id,
        "status": "draft",
        "intent": "proposal",
        "title": "Proposed safety and support plan",
        "description": (
            f"Proposed by {pack_label} from {len(findings)} finding(s); a clinician must review it "
            "before any activity starts."
        ),
        "subject": {"reference": patient_ref},
        "created": iso(now),
    }
    if version != "R5":
        plan["author"] = {"display": f"careplan-rules {engine_version}"}
    addresses = sorted({c for _, _, conds in merged.values() for c in conds})
    if addresses:
        plan["addresses"] = (
            [{"reference": {"reference": c}} for c in addresses]
            if version == "R5"
            else [{"reference": c} for c in addresses]
        )
    issues = sorted({f"DetectedIssue/{f.detected_issue_id}" for f in findings if f.detected_issue_id})
    if issues:
        plan["supportingInfo"] = [{"reference": r} for r in issues]
    activities: list[dict[str, Any]] = []
    contained: list[dict[str, Any]] = []
    for key in sorted(merged, key=lambda k: (merged[k][0].rule_id, k)):
        act, reasons, _conds = merged[key]
        if version == "R5":
            local = f"act-{key}"
            contained.append(_r5_request(act, local, patient_ref, now, reasons))
            activities.append({"plannedActivityReference": {"reference": f"#{local}"}})
        else:
            detail: dict[str, Any] = {
                "kind": act.kind,
                "code": _code(act),
                "status": "not-started",
                "description": act.description or act.title,
            }
            if reasons:
                detail["reasonReference"] = [{"reference": r} for r in reasons]
            period = _period(act, now)
            if period:
                detail["scheduledPeriod"] = period
            if act.kind == "MedicationRequest":
                detail["productCodeableConcept"] = _code(act)
            activities.append({"detail": detail})
    if contained:
        plan["contained"] = contained
    plan["activity"] = activities
    return plan


def _r5_request(
    act: ProposedActivity, local_id: str, patient_ref: str, now: datetime, reasons: list[str]
) -> dict[str, Any]:
    subject = {"reference": patient_ref}
    reason = [{"reference": {"reference": r}} for r in reasons]
    period = _period(act, now)
    description = act.description or act.title
    if act.kind == "Task":
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": local_id,
            "status": "draft",
            "intent": "proposal",
            "code": _code(act),
            "description": description,
            "for": subject,
        }
        if period:
            task["requestedPeriod"] = period
        if reason:
            task["reason"] = reason[:1]
        return task
    if act.kind == "MedicationRequest":
        med: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": local_id,
            "status": "draft",
            "intent": "proposal",
            "medication": {"concept": _code(act)},
            "subject": subject,
            "note": [{"text": description}],
        }
        if reason:
            med["reason"] = reason
        return med
    if act.kind == "CommunicationRequest":
        comm: dict[str, Any] = {
            "resourceType": "CommunicationRequest",
            "id": local_id,
            "status": "draft",
            "intent": "proposal",
            "subject": subject,
            "payload": [{"contentCodeableConcept": _code(act)}],
            "note": [{"text": description}],
        }
        if reason:
            comm["reason"] = reason
        return comm
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": local_id,
        "status": "draft",
        "intent": "proposal",
        "code": {"concept": _code(act)},
        "subject": subject,
        "patientInstruction": [{"instructionMarkdown": description}],
    }
    if period:
        request["occurrencePeriod"] = period
    if reason:
        request["reason"] = reason
    return request
