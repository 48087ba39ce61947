"""Partial assertions of rule tests: only what a case lists is compared, each as expected vs actual."""

from __future__ import annotations

import re

from careplan_rules.findings import Finding, PatientResult
from careplan_rules.model.ruletest import Assertions, TextMatcher


def _text(label: str, expected: str | TextMatcher, actual: str) -> list[str]:
    if isinstance(expected, str):
        return [] if actual == expected else [f"{label}: expected {expected!r}, actual {actual!r}"]
    out = []
    if expected.equals is not None and actual != expected.equals:
        out.append(f"{label}: expected {expected.equals!r}, actual {actual!r}")
    contains = [expected.contains] if isinstance(expected.contains, str) else (expected.contains or [])
    for part in contains:
        if part not in actual:
            out.append(f"{label}: expected to contain {part!r}, actual {actual!r}")
    if expected.matches is not None and re.search(expected.matches, actual) is None:
        out.append(f"{label}: expected to match /{expected.matches}/, actual {actual!r}")
    if expected.max_length is not None and len(actual) > expected.max_length:
        out.append(f"{label}: {len(actual)} characters, more than {expected.max_length}")
    return out


def check_assertions(expected: Assertions | None, finding: Finding | None, patient: PatientResult) -> list[str]:
    """Every mismatch as one ``what: expected …, actual …`` line (empty when all hold)."""
    if expected is None:
        return []
    failures: list[str] = []
    if expected.errors is not None:
        codes = sorted({e.code for e in patient.errors})
        if sorted(expected.errors) != codes:
            failures.append(f"errors: expected {sorted(expected.errors)}, actual {codes}")
    if finding is None:
        return failures
    if expected.severity is not None and finding.severity != expected.severity:
        failures.append(f"severity: expected {expected.severity}, actual {finding.severity}")
    if expected.indicator is not None and finding.indicator != expected.indicator:
        failures.append(f"indicator: expected {expected.indicator}, actual {finding.indicator}")
    if expected.summary is not None:
        failures += _text("summary", expected.summary, finding.summary)
    if expected.detail is not None:
        failures += _text("detail", expected.detail, finding.detail)
    if expected.implicated is not None and sorted(expected.implicated) != sorted(finding.implicated):
        failures.append(f"implicated: expected {sorted(expected.implicated)}, actual {sorted(finding.implicated)}")
    if expected.implicated_contains is not None:
        missing = sorted(set(expected.implicated_contains) - set(finding.implicated))
        if missing:
            failures.append(f"implicated: missing {missing}, actual {sorted(finding.implicated)}")
    if expected.escalated is not None and bool(finding.escalations) != expected.escalated:
        actual = [e.reason for e in finding.escalations]
        failures.append(f"escalated: expected {expected.escalated}, actual {actual or 'no escalation'}")
    if expected.escalation_reasons is not None:
        reasons = [e.reason for e in finding.escalations]
        if len(reasons) != len(expected.escalation_reasons):
            failures.append(f"escalation reasons: expected {len(expected.escalation_reasons)}, actual {reasons}")
        else:
            for i, (want, got) in enumerate(zip(expected.escalation_reasons, reasons, strict=True)):
                failures += _text(f"escalation reason {i + 1}", want, got)
    if expected.criteria is not None:
        outcome = next((o for o in patient.outcomes if o.rule_id == finding.rule), None)
        for name, refs in expected.criteria.items():
            result = outcome.criteria.get(name) if outcome is not None else None
            if result is None:
                failures.append(f"criteria: rule has no criterion {name!r}")
                continue
            actual = sorted(m.ref for m in result.matches)
            if sorted(refs) != actual:
                failures.append(f"criterion {name}: expected {sorted(refs)}, actual {actual}")
    if expected.matched_by is not None:
        how = {(e.resource, e.matched_by or "") for e in finding.evidence}
        for ref, kind in expected.matched_by.items():
            if (ref, kind) not in how:
                actual = sorted(k for r, k in how if r == ref) or ["not in the evidence"]
                failures.append(f"matched_by {ref}: expected {kind}, actual {', '.join(str(a) for a in actual)}")
    if expected.activities is not None:
        keys = sorted(a.key for a in finding.activities)
        if sorted(expected.activities) != keys:
            failures.append(f"activities: expected {sorted(expected.activities)}, actual {keys}")
    return failures
