"""The default backend: evaluates compiled rules directly in Python.

Criteria are computed first (each over all of the patient's facts), then ``when`` is
evaluated over the complete results, so negation and counting never depend on fact order.
Rules run in dependency order so a rule can read the findings of the rules it names.
"""

from __future__ import annotations

from datetime import datetime

from careplan_rules.engine.compiler import CompiledRule, RuleSet
from careplan_rules.engine.context import EvalContext
from careplan_rules.engine.expressions import evaluate_when
from careplan_rules.errors import CarePlanRulesError, EvaluationError
from careplan_rules.facts import PatientRecord
from careplan_rules.findings import AppliedEscalation, CriterionResult, Indicator, RuleOutcome, SeverityLevel


class PythonBackend:
    name = "python"

    def evaluate(
        self, ruleset: RuleSet, record: PatientRecord, now: datetime, *, trace: bool = False
    ) -> tuple[RuleOutcome, ...]:
        contexts: dict[str, EvalContext] = {}
        outcomes: dict[str, RuleOutcome] = {}
        for rule in ruleset.rules:
            pack_id = rule.source.pack_id
            ctx = contexts.get(pack_id)
            if ctx is None:
                ctx = EvalContext(record, now, ruleset.registries[pack_id], trace, outcomes)
                contexts[pack_id] = ctx
            try:
                outcomes[rule.id] = evaluate_rule(rule, ctx)
            except CarePlanRulesError:
                raise
            except Exception as exc:  # a bug must surface as an error, never as "did not fire"
                raise EvaluationError(
                    f"rule {rule.id!r} failed for {record.patient_ref}: {type(exc).__name__}: {exc}"
                ) from exc
        return tuple(outcomes[r.id] for r in ruleset.rules)


def evaluate_rule(rule: CompiledRule, ctx: EvalContext) -> RuleOutcome:
    results: dict[str, CriterionResult] = {}
    for criterion in rule.criteria:
        results[criterion.name] = criterion.evaluate(ctx, results)
    verdict = evaluate_when(rule.when, results, rule.params)
    if not verdict.holds:
        return RuleOutcome(rule.id, False, results)
    severity, indicator = rule.severity, rule.indicator
    applied: list[AppliedEscalation] = []
    for esc in rule.escalations:
        key = f"escalate.{esc.index}.reason"
        if esc.inherit is not None:
            worst = _worst(results[esc.inherit])
            if worst is None:
                continue
            (w_sev, w_ind, source_rule) = worst
            if w_sev > severity or w_ind > indicator:
                severity, indicator = max(severity, w_sev), max(indicator, w_ind)
                applied.append(AppliedEscalation(w_sev.code, w_ind.code, key, source_rule))
            continue
        assert esc.when is not None
        if evaluate_when(esc.when, results, rule.params).holds:
            if esc.severity is not None:
                severity = max(severity, esc.severity)
            if esc.indicator is not None:
                indicator = max(indicator, esc.indicator)
            applied.append(
                AppliedEscalation(
                    esc.severity.code if esc.severity else None,
                    esc.indicator.code if esc.indicator else None,
                    key,
                )
            )
    implicated: set[str] = set()
    for name in rule.implicated:
        result = results[name]
        allowed = verdict.restricted.get(name)
        for match in result.matches:
            if match.outcome is not None:
                implicated.update(match.outcome.implicated)
            elif allowed is None or match.ref in allowed:
                implicated.add(match.ref)
    activities = tuple(
        i
        for i, when in enumerate(rule.source.activity_whens)
        if when is None or evaluate_when(when, results, rule.params).holds
    )
    return RuleOutcome(
        rule.id,
        True,
        results,
        severity,
        indicator,
        tuple(applied),
        tuple(sorted(implicated)),
        activities,
        {k: frozenset(v) for k, v in verdict.restricted.items()},
    )


def _worst(result: CriterionResult) -> tuple[SeverityLevel, Indicator, str] | None:
    """The worst severity and the worst indicator among matched findings, and whose they are."""
    outcomes = sorted(
        (m.outcome for m in result.matches if m.outcome is not None),
        key=lambda o: (-o.indicator, -o.severity, o.rule_id),
    )
    if not outcomes:
        return None
    severity = max(o.severity for o in outcomes)
    return severity, outcomes[0].indicator, outcomes[0].rule_id
