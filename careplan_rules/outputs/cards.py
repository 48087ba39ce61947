"""Findings as CDS Hooks 2.0.1 cards (one card per finding).

Each card carries what an EHR needs to show and act on it: a summary under 140 characters,
the indicator, markdown detail that also says which data the finding rests on, a source that
names the rule and its pack, links to the rule's evidence, override reasons from the CDS
Hooks 3.0 non-adherence code system, and suggestions whose actions create the DetectedIssue
and a proposed CarePlan (plus, as a separate suggestion, a draft medication order where the
rule proposes one, so a clinician can record the issue without ordering).

Card and suggestion UUIDs are UUIDv5 of the DetectedIssue id and an optional ``salt``: the
CLI leaves the salt empty so its output is byte-identical across runs; the service salts
with the ``hookInstance`` so every card of every call has its own UUID (feedback names the
card by UUID and must be traceable to the call, its user and its rule) while a retried call
gets the same UUIDs again. The call-independent identity of a card (rule + patient +
implicated records) is the DetectedIssue id, carried in the card's ``extension``.

When the engine cannot evaluate, :func:`could_not_evaluate_card` says so: an empty card list
would read as "no interaction", which is the one answer the engine must never give wrongly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.engine.compiler import RuleSet
from careplan_rules.findings import Finding, PatientResult
from careplan_rules.outputs.careplan import build_care_plan
from careplan_rules.outputs.ids import stable_id

SUMMARY_MAX = 139  # CDS Hooks: "<140 characters", strictly less
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
# CDS Hooks 3.0 (ballot) CodeSystem non-adherence-reason-codes; displays verbatim from the
# CodeSystem (its trailing "*" on patient-refuses is a footnote marker, left out). The set is
# the one that fits an interaction warning: not applicable / already done / used safely before /
# risk accepted / risk mitigated / patient declines.
DEFAULT_OVERRIDE_REASONS = (
    ("cds-not-applicable", "PC CDS does not apply to patient"),
    ("action-completed", "Recommended action was already completed"),
    ("action-performed-no-adverse-effect", "Intended action was performed previously without adverse effect"),
    ("risk-benefit-ratio", "Recipient assessment of risk/benefit ratio"),
    ("mitigate-risk-negative-outcome", "Action taken to mitigate risk of negative outcome"),
    ("patient-refuses", "Patient refuses/declines (no context given)"),
)
RULE_TOPIC_SYSTEM = "http://careplan-rules.org/CodeSystem/rule"
EXTENSION_KEY = "org.careplan-rules"
DEFAULT_TOPIC = "kratom, opioid and depression-support safety rules"


def short_summary(text: str) -> str:
    """One line, strictly under 140 characters (CDS Hooks ``Card.summary``)."""
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1].rstrip() + "…"


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
    """The card's markdown: the rule's detail, why it was graded so, and the data it rests on."""
    parts = [finding.detail]
    if finding.escalations:
        parts.append("**Why this grade:** " + "; ".join(e.reason for e in finding.escalations) + ".")
    evidence = _evidence_lines(finding)
    if evidence:
        parts.append("**Based on:**\n" + "\n".join(evidence))
    return "\n\n".join(parts)


def override_reasons(finding: Finding, ruleset: RuleSet) -> list[dict[str, Any]]:
    """The rule's own override reasons, else the 3.0 non-adherence defaults (each has a display)."""
    rule = ruleset.rule(finding.rule)
    reasons = rule.source.model.outputs.card.override_reasons if rule is not None else None
    if reasons:
        return [{"system": r.system, "code": r.code, "display": r.display or r.code} for r in reasons]
    return [{"system": NON_ADHERENCE, "code": code, "display": display} for code, display in DEFAULT_OVERRIDE_REASONS]


def build_card(
    finding: Finding,
    result: PatientResult,
    ruleset: RuleSet,
    now: datetime,
    engine_version: str,
    *,
    salt: str = "",
) -> dict[str, Any]:
    """The card of one finding.

    Args:
        finding: the finding to show.
        result: the patient result it belongs to (for its DetectedIssue and FHIR release).
        ruleset: the compiled rules (for the rule's links, labels and override reasons).
        now: the evaluation time (stamped on the proposed CarePlan).
        engine_version: stamped on generated resources.
        salt: mixed into the card and suggestion UUIDs (the service passes the hookInstance).

    Returns:
        A CDS Hooks 2.0.1 ``Card`` as a JSON-ready dict.
    """
    rule = ruleset.rule(finding.rule)
    model = rule.source.model if rule is not None else None
    pack = next((p for p in ruleset.packs if p.id == finding.pack), None)
    issue = next((d for d in result.detected_issues if d.get("id") == finding.detected_issue_id), None)
    identity = finding.detected_issue_id or stable_id(finding.rule, result.patient, finding.implicated)
    card_uuid = stable_id("card", identity, salt) if salt else stable_id("card", identity)
    base_url = pack.manifest.url if pack is not None else None
    source: dict[str, Any] = {
        "label": f"{pack.manifest.title if pack else finding.pack} {finding.pack_version}: {finding.rule}",
        "topic": {"system": RULE_TOPIC_SYSTEM, "code": finding.rule, "display": finding.title},
    }
    if base_url:
        source["url"] = f"{base_url}#{finding.rule}"
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": short_summary(finding.summary),
        "indicator": finding.indicator,
        "detail": card_detail(finding),
        "source": source,
    }
    suggestions = _suggestions(finding, result, now, engine_version, card_uuid, issue, model)
    if suggestions:
        card["suggestions"] = suggestions
        # "any": recording the issue and drafting an order are independent choices
        card["selectionBehavior"] = "any"
    card["overrideReasons"] = override_reasons(finding, ruleset)
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
            "detectedIssue": identity,
        }
    }
    return card


def _suggestions(
    finding: Finding,
    result: PatientResult,
    now: datetime,
    engine_version: str,
    card_uuid: str,
    issue: Mapping[str, Any] | None,
    model: Any,
) -> list[dict[str, Any]]:
    record: list[dict[str, Any]] = []
    if issue is not None:
        record.append(
            {"type": "create", "description": f"Record the detected issue: {finding.title}", "resource": dict(issue)}
        )
    plan = build_care_plan(
        [finding], result.patient, now, result.fhir_version, f"{finding.pack} {finding.pack_version}", engine_version
    )
    if plan is not None:
        record.append({"type": "create", "description": "Propose a care plan (draft) for review", "resource": plan})
    out: list[dict[str, Any]] = []
    if record:
        label = (model.outputs.card.suggestion_label if model is not None else None) or (
            "Record the issue and propose a care plan"
        )
        out.append(
            {"label": label, "uuid": stable_id("suggestion", card_uuid), "isRecommended": True, "actions": record}
        )
    for act in finding.activities:
        if act.kind == "MedicationRequest" and act.code:
            order = _draft_order(act.code, act.title, result, finding)
            out.append(
                {
                    "label": f"Draft order: {act.title}",
                    "uuid": stable_id("suggestion", card_uuid, act.key),
                    "isRecommended": True,
                    "actions": [
                        {
                            "type": "create",
                            "description": f"Draft (unsigned) order for review: {act.title}",
                            "resource": order,
                        }
                    ],
                }
            )
    return out


def _draft_order(code: Mapping[str, Any], title: str, result: PatientResult, finding: Finding) -> dict[str, Any]:
    """An unsigned ``MedicationRequest`` proposal (e.g. naloxone) a clinician completes and signs."""
    concept = {"coding": [{k: v for k, v in code.items() if k in ("system", "code", "display")}], "text": title}
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": stable_id("order", finding.detected_issue_id or finding.rule, str(code.get("code", ""))),
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": result.patient},
    }
    if result.fhir_version == "R5":
        order["medication"] = {"concept": concept}
        if finding.detected_issue_id:
            order["reason"] = [{"reference": {"reference": f"DetectedIssue/{finding.detected_issue_id}"}}]
    else:
        order["medicationCodeableConcept"] = concept
        if finding.detected_issue_id:
            order["detectedIssue"] = [{"reference": f"DetectedIssue/{finding.detected_issue_id}"}]
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
        if item["url"].startswith(("https://", "http://")) and item["url"] not in seen:
            seen.add(item["url"])
            unique.append(item)
    return unique


def build_cards(
    results: Iterable[PatientResult],
    ruleset: RuleSet,
    now: datetime,
    engine_version: str,
    *,
    salt: str = "",
    include_errors: bool = True,
    topic: str = DEFAULT_TOPIC,
) -> list[dict[str, Any]]:
    """Cards for every finding, de-duplicated by (rule, implicated records).

    Args:
        results: per-patient results (several inputs or patients may be given).
        ruleset: the compiled rules the results came from.
        now: the evaluation time.
        engine_version: stamped on generated resources.
        salt: mixed into card/suggestion UUIDs (see the module docstring).
        include_errors: add a "could not evaluate" card for every result that has errors,
            so an input the engine could not read never looks like an input without findings.
        topic: what the rules cover, in the "could not evaluate" card's words.

    Returns:
        The cards, in result order; findings keep their order (most urgent first).
    """
    cards: list[dict[str, Any]] = []
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for result in results:
        if result.errors and include_errors:
            cards.append(
                could_not_evaluate_card(
                    "the patient's data could not be read or evaluated",
                    result.patient or None,
                    diagnostics=result.errors,
                    salt=salt,
                    topic=topic,
                )
            )
        for finding in result.findings:
            key = (result.patient, finding.rule, tuple(sorted(finding.implicated)))
            if key in seen:
                continue
            seen.add(key)
            cards.append(build_card(finding, result, ruleset, now, engine_version, salt=salt))
    return cards


def could_not_evaluate_card(
    reason: str,
    patient: str | None = None,
    *,
    diagnostics: Sequence[Diagnostic] = (),
    salt: str = "",
    topic: str = DEFAULT_TOPIC,
    max_listed: int = 10,
) -> dict[str, Any]:
    """The card shown when the engine cannot evaluate: a clinician must never see silence.

    Args:
        reason: one sentence saying why (shown to the clinician).
        patient: the patient reference, when known (only used for the card's UUID).
        diagnostics: the engine's diagnostics; their codes and messages are listed in the detail.
        salt: mixed into the UUID (the service passes the hookInstance).
        topic: what the rules cover, e.g. the loaded packs' titles.
        max_listed: at most this many diagnostics are listed.

    Returns:
        A ``warning`` card without suggestions.
    """
    lines = [
        f"The {topic} **could not be evaluated** for this patient, so the absence of other "
        "warnings means nothing. Check the medication list for interactions manually.",
        f"Reason: {reason.rstrip('.')}.",
    ]
    if diagnostics:
        listed = [f"- `{d.code}`: {d.message}" for d in diagnostics[:max_listed]]
        if len(diagnostics) > max_listed:
            listed.append(f"- … and {len(diagnostics) - max_listed} more")
        lines.append("**Problems:**\n" + "\n".join(listed))
    codes = sorted({d.code for d in diagnostics})
    card: dict[str, Any] = {
        "uuid": stable_id("could-not-evaluate", patient or "", reason, salt),
        "summary": short_summary("Medication safety rules could not run; check interactions manually"),
        "indicator": "warning",
        "detail": "\n\n".join(lines),
        "source": {"label": "careplan-rules"},
        "extension": {f"{EXTENSION_KEY}.could-not-evaluate": {"reason": reason, **({"codes": codes} if codes else {})}},
    }
    return card
