"""Findings as CDS Hooks 2.0.1 cards (one card per finding).

Each card carries what an EHR needs to show and act on it: a summary under 140 characters,
the indicator, markdown detail that also says which data the finding rests on, a source that
names the rule and its pack, links to the rule's evidence, override reasons from the CDS
Hooks 3.0 non-adherence code system, and a suggestion whose actions create the DetectedIssue
and a proposed CarePlan (plus a draft medication order where the rule proposes one).
Cards and suggestions have stable UUIDs (v5 of the DetectedIssue id) so feedback can be tied
back to the rule and the implicated records, and duplicates can be recognised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from careplan_rules.engine.compiler import RuleSet
from careplan_rules.findings import Finding, PatientResult
from careplan_rules.outputs.careplan import build_care_plan
from careplan_rules.outputs.ids import stable_id

NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
DEFAULT_OVERRIDE_REASONS = (
    ("cds-not-applicable", "CDS does not apply to patient"),
    ("risk-benefit-ratio", "Recipient assessment of risk/benefit ratio"),
    ("mitigate-risk-negative-outcome", "Action taken to mitigate risk of negative outcome"),
    (
        "need-more-info",
        "Could not address recommended action due to need for more information/pending results/pending consult",
    ),
    ("patient-refuses", "Patient refuses/declines (no context given)"),
)
RULE_TOPIC_SYSTEM = "http://careplan-rules.org/CodeSystem/rule"
EXTENSION_KEY = "org.careplan-rules"


def _evidence_lines(finding: Finding) -> list[str]:
    lines = []
    for item in finding.evidence:
        if item.finding is not None:
            lines.append(f"- finding of rule `{item.finding}`")
            continue
        how = item.matched_by or "matched"
        what = f" '{item.matched}'" if item.matched else ""
        vs = f" ({item.value_set})" if item.value_set else ""
        lines.append(f"- {item.resource}: {how}{what}{vs}")
    return lines


def card_detail(finding: Finding) -> str:
    parts = [finding.detail]
    if finding.escalations:
        parts.append("**Why this grade:** " + "; ".join(e.reason for e in finding.escalations) + ".")
    evidence = _evidence_lines(finding)
    if evidence:
        parts.append("**Based on:**\n" + "\n".join(evidence))
    return "\n\n".join(parts)


def build_card(
    finding: Finding, result: PatientResult, ruleset: RuleSet, now: datetime, engine_version: str
) -> dict[str, Any]:
    rule = ruleset.rule(finding.rule)
    model = rule.source.model if rule is not None else None
    pack = next((p for p in ruleset.packs if p.id == finding.pack), None)
    issue = next((d for d in result.detected_issues if d.get("id") == finding.detected_issue_id), None)
    card_uuid = stable_id("card", finding.detected_issue_id or finding.rule)
    base_url = pack.manifest.url if pack is not None else None
    source: dict[str, Any] = {
        "label": f"{pack.manifest.title if pack else finding.pack} {finding.pack_version}: {finding.rule}",
        "topic": {"system": RULE_TOPIC_SYSTEM, "code": finding.rule, "display": finding.title},
    }
    if base_url:
        source["url"] = f"{base_url}#{finding.rule}"
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": finding.summary,
        "indicator": finding.indicator,
        "detail": card_detail(finding),
        "source": source,
    }
    actions: list[dict[str, Any]] = []
    if issue is not None:
        actions.append(
            {"type": "create", "description": f"Record the detected issue: {finding.title}", "resource": dict(issue)}
        )
    plan = build_care_plan(
        [finding], result.patient, now, result.fhir_version, f"{finding.pack} {finding.pack_version}", engine_version
    )
    if plan is not None:
        actions.append({"type": "create", "description": "Propose a care plan (draft) for review", "resource": plan})
    for act in finding.activities:
        if act.kind == "MedicationRequest" and act.code:
            actions.append(
                {
                    "type": "create",
                    "description": f"Draft order: {act.title}",
                    "resource": _draft_order(act.code, act.title, result, finding),
                }
            )
    if actions:
        card["suggestions"] = [
            {
                "label": (
                    model.outputs.card.suggestion_label if model and model.outputs.card.suggestion_label else None
                )
                or "Record the issue and propose a care plan",
                "uuid": stable_id("suggestion", card_uuid),
                "isRecommended": True,
                "actions": actions,
            }
        ]
        card["selectionBehavior"] = "any"
    reasons = model.outputs.card.override_reasons if model is not None else None
    if reasons:
        card["overrideReasons"] = [
            {"system": r.system, "code": r.code, "display": r.display or r.code} for r in reasons
        ]
    else:
        card["overrideReasons"] = [
            {"system": NON_ADHERENCE, "code": code, "display": display} for code, display in DEFAULT_OVERRIDE_REASONS
        ]
    links = _links(finding, ruleset, base_url)
    if links:
        card["links"] = links
    card["extension"] = {
        f"{EXTENSION_KEY}.finding": {
            "rule": finding.rule,
            "ruleVersion": finding.rule_version,
            "pack": finding.pack,
            "packVersion": finding.pack_version,
            "severity": finding.severity,
            "implicated": list(finding.implicated),
            "detectedIssue": finding.detected_issue_id,
        }
    }
    return card


def _draft_order(code: Mapping[str, Any], title: str, result: PatientResult, finding: Finding) -> dict[str, Any]:
    concept = {"coding": [{k: v for k, v in code.items() if k in ("system", "code", "display")}], "text": title}
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": stable_id("order", finding.detected_issue_id or finding.rule, code.get("code", "")),
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": result.patient},
    }
    if result.fhir_version == "R5":
        order["medication"] = {"concept": concept}
    else:
        order["medicationCodeableConcept"] = concept
    return order


def _links(finding: Finding, ruleset: RuleSet, base_url: str | None) -> list[dict[str, Any]]:
    rule = ruleset.rule(finding.rule)
    links: list[dict[str, Any]] = []
    if base_url:
        links.append(
            {
                "label": f"Rule {finding.rule}: logic and evidence",
                "url": f"{base_url}#{finding.rule}",
                "type": "absolute",
            }
        )
    if rule is not None:
        for citation in rule.source.model.metadata.citations:
            if citation.url:
                links.append({"label": citation.id, "url": citation.url, "type": "absolute"})
        for extra in rule.source.model.outputs.card.links:
            links.append({"label": extra.label, "url": extra.url, "type": "absolute"})
    seen: set[str] = set()
    unique = []
    for item in links:
        if item["url"] not in seen:
            seen.add(item["url"])
            unique.append(item)
    return unique


def build_cards(
    results: Iterable[PatientResult], ruleset: RuleSet, now: datetime, engine_version: str
) -> list[dict[str, Any]]:
    """Cards for every finding, de-duplicated by (rule, implicated records)."""
    cards: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for result in results:
        for finding in result.findings:
            key = (finding.rule, finding.implicated)
            if key in seen:
                continue
            seen.add(key)
            cards.append(build_card(finding, result, ruleset, now, engine_version))
    return cards


def could_not_evaluate_card(reason: str, patient: str | None = None) -> dict[str, Any]:
    """The card shown when the engine cannot evaluate: a clinician must never see silence."""
    detail = (
        "The kratom, opioid and depression-support safety rules **could not be evaluated** for this "
        "patient, so their absence of warnings means nothing. Review the medication list manually.\n\n"
        f"Reason: {reason}"
    )
    return {
        "uuid": stable_id("could-not-evaluate", patient or "", reason),
        "summary": "Medication safety rules could not run; check interactions manually",
        "indicator": "warning",
        "detail": detail,
        "source": {"label": "careplan-rules"},
    }
