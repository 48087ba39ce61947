"""A finding as a FHIR ``DetectedIssue``, valid in the release of the input (R4 or R5).

R4 and R5 differ here: R4 has ``patient`` and a string ``detail``, R5 has ``subject`` and a
markdown ``detail``. ``code`` is the v3 ActCode the rule names (``NHP`` natural health
product alert for kratom pairs, ``DRG`` drug interaction); the binding is *preferred*, so
both are allowed even though the DetectedIssueCategory value set lists neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from careplan_rules.findings import Finding
from careplan_rules.model.common import CodingSpec
from careplan_rules.model.rule import DetectedIssueSpec
from careplan_rules.temporal import iso
from careplan_rules.terminology.systems import ACTCODE

ACT_CODE_DISPLAY = {
    "NHP": "Natural Health Product Alert",
    "DRG": "Drug Interaction Alert",
    "DUPTHPY": "Duplicate Therapy Alert",
    "NONRX": "Non-Prescription Interaction Alert",
    "ALGY": "Allergy Alert",
    "FOOD": "Food Interaction Alert",
}
RULE_IDENTIFIER_SYSTEM = "urn:careplan-rules:rule"
ENGINE_DISPLAY = "careplan-rules"


def issue_code(spec: DetectedIssueSpec, title: str) -> dict[str, Any]:
    code = spec.code
    if isinstance(code, str):
        return {"coding": [{"system": ACTCODE, "code": code, "display": ACT_CODE_DISPLAY[code]}], "text": title}
    if isinstance(code, CodingSpec):
        coding: dict[str, Any] = {"system": code.system, "code": code.code}
        if code.display:
            coding["display"] = code.display
        return {"coding": [coding], "text": title}
    return {"text": title}


def build_detected_issue(
    finding: Finding,
    spec: DetectedIssueSpec,
    patient_ref: str,
    now: datetime,
    version: str,
    reference_url: str | None,
    engine_version: str,
) -> Mapping[str, Any]:
    assert finding.detected_issue_id is not None
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": finding.detected_issue_id,
        "identifier": [{"system": RULE_IDENTIFIER_SYSTEM, "value": f"{finding.pack}/{finding.rule}"}],
        "status": "preliminary",
        "code": issue_code(spec, finding.title),
        "severity": finding.severity,
    }
    subject = {"reference": patient_ref}
    if version == "R5":
        issue["subject"] = subject
    else:
        issue["patient"] = subject
    issue["identifiedDateTime"] = iso(now)
    issue["author"] = {
        "display": f"{ENGINE_DISPLAY} {engine_version}, rule {finding.rule} {finding.rule_version} "
        f"({finding.pack} {finding.pack_version})"
    }
    if finding.implicated:
        issue["implicated"] = [{"reference": ref} for ref in finding.implicated]
    evidence = []
    for item in finding.evidence:
        if item.finding is not None:
            continue
        how = f"{item.criterion}: {item.matched_by or 'matched'}"
        if item.matched is not None:
            how += f" {item.matched!r}"
        if item.value_set:
            how += f" in {item.value_set}"
        evidence.append({"code": [{"text": how}], "detail": [{"reference": item.resource}]})
    if evidence:
        issue["evidence"] = evidence
    issue["detail"] = f"{finding.summary}\n\n{finding.detail}".strip()
    if reference_url:
        issue["reference"] = reference_url
    return issue
