"""Why a rule fired or did not, per criterion: what matched and how, what was rejected and why.

The same explanation serves ``careplan-rules explain`` (terminal tree or JSON) and the
failure messages of rule tests. Clinical reviewers asked for exactly this in every rule tool
we looked at ("show me actual vs expected", OPA #2546, #1581, #7830).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from careplan_rules.engine.compiler import CompiledRule
from careplan_rules.findings import CriterionResult, Finding, RuleOutcome
from careplan_rules.model.when import All, AnyOf, Count, DailyMme, Not, Overlaps, Ref, WhenExpr


def describe_when(expr: WhenExpr) -> str:
    if isinstance(expr, Ref):
        return expr.name
    if isinstance(expr, All):
        return "all of (" + ", ".join(describe_when(e) for e in expr.items) + ")"
    if isinstance(expr, AnyOf):
        return "any of (" + ", ".join(describe_when(e) for e in expr.items) + ")"
    if isinstance(expr, Not):
        return f"not {describe_when(expr.item)}"
    if isinstance(expr, Count):
        parts = []
        if expr.at_least is not None:
            parts.append(f">= {expr.at_least}")
        if expr.at_most is not None:
            parts.append(f"<= {expr.at_most}")
        return f"count of distinct {expr.of.name} {' and '.join(parts)}"
    if isinstance(expr, DailyMme):
        return f"total MME/day of {expr.of.name} >= {expr.at_least}"
    if isinstance(expr, Overlaps):
        grace = f" (within {expr.within})" if expr.within else ""
        return f"{expr.first.name} overlaps {expr.second.name}{grace}"
    return repr(expr)  # pragma: no cover


def _criterion(rule: CompiledRule, result: CriterionResult, restricted: frozenset[str] | None) -> dict[str, Any]:
    spec = rule.source.model.criteria.get(result.name)
    matched = []
    for m in result.matches:
        item: dict[str, Any] = {"resource": m.ref}
        if restricted is not None and m.ref not in restricted:
            item["note"] = "matched, but takes no part in the overlapping pair"
        if m.evidence:
            item["matches"] = [
                {
                    "matchedBy": e.matched_by,
                    "matched": e.matched,
                    "concept": e.name,
                    "valueSet": e.valueset,
                    "field": e.field,
                    **({"unverified": True} if e.unverified else {}),
                }
                for e in m.evidence
            ]
        if m.outcome is not None:
            item["finding"] = {
                "rule": m.outcome.rule_id,
                "severity": m.outcome.severity.code,
                "indicator": m.outcome.indicator.code,
            }
        if m.timing:
            item["timing"] = m.timing
        if m.date is not None:
            item["date"] = m.date.date().isoformat()
        if m.value is not None:
            item["value"] = m.value.label
        if m.mme is not None:
            item["mmePerDay"] = round(m.mme, 1)
        if m.note and m.mme is None and "MME" not in (m.note or ""):
            item["doseNote"] = m.note
        matched.append(item)
    return {
        "name": result.name,
        "kind": result.kind,
        "description": spec.description if spec is not None else None,
        "holds": result.holds,
        "matched": matched,
        "rejected": [{"resource": r.ref, "reason": r.reason} for r in result.rejected],
    }


def explain(
    rule: CompiledRule,
    outcome: RuleOutcome,
    finding: Finding | None,
    other_patients: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A JSON-able explanation of one rule for one patient.

    Args:
        other_patients: ``(resource, patient)`` pairs of records in the same input that belong
            to another patient, listed so a reviewer sees why they were not considered.
    """
    model = rule.source.model
    out: dict[str, Any] = {
        "rule": model.id,
        "version": model.version,
        "title": model.title,
        "fired": outcome.fired,
        "when": describe_when(rule.when),
        "criteria": [_criterion(rule, outcome.criteria[c.name], outcome.restricted.get(c.name)) for c in rule.criteria],
        "default": {"severity": rule.severity.code, "indicator": rule.indicator.code},
    }
    if outcome.fired:
        out["severity"] = outcome.severity.code
        out["indicator"] = outcome.indicator.code
    if finding is not None:
        out["escalations"] = [e.to_json() for e in finding.escalations]
        out["outputs"] = {
            "summary": finding.summary,
            "implicated": list(finding.implicated),
            "activities": [a.key for a in finding.activities],
            "detectedIssue": finding.detected_issue_id,
        }
    if other_patients:
        out["otherPatients"] = [{"resource": r, "patient": p} for r, p in other_patients]
    return out


def explanation_lines(data: dict[str, Any], *, include_rejected: bool = True) -> list[str]:
    """Plain-text lines of an explanation (test failures, logs)."""
    lines = [f"{data['rule']}@{data['version']} {'FIRED' if data['fired'] else 'did not fire'}; when {data['when']}"]
    for c in data["criteria"]:
        mark = "✔" if c["holds"] else "✘"
        lines.append(f"  {mark} {c['name']} ({c['kind']})")
        for m in c["matched"]:
            how = "; ".join(f"{x['matchedBy']} {x['matched']!r} in {x['valueSet']}" for x in m.get("matches", [])) or (
                f"finding {m['finding']['rule']}" if "finding" in m else ""
            )
            extra = ", ".join(f"{k} {m[k]}" for k in ("timing", "date", "value", "mmePerDay") if k in m)
            lines.append(f"      + {m['resource']}: {how}" + (f" ({extra})" if extra else ""))
        if include_rejected:
            for r in c["rejected"][:12]:
                lines.append(f"      - {r['resource']}: {r['reason']}")
            if len(c["rejected"]) > 12:
                lines.append(f"      … {len(c['rejected']) - 12} more rejected")
    for e in data.get("escalations", []):
        lines.append(f"  ↑ {e['reason']}")
    return lines
