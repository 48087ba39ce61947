"""The default backend: evaluates compiled rules directly in Python.

Criteria are computed first (each over all of the patient's facts), then ``when`` is
evaluated over the complete results, so negation and counting never depend on fact order.
Rules run in dependency order so a rule can read the findings of the rules it names.

The pieces other backends share are public here: :class:`Evaluation` (per-patient contexts
and outcomes, error wrapping), :func:`criterion_results` and :func:`build_outcome`. A backend
that decides ``when`` differently (the durable_rules backend) reuses everything else, so the
two can only differ in the firing decision, which the differential tests compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ParamSpec, TypeVar

from careplan_rules.engine.compiler import CompiledRule, RuleSet
from careplan_rules.engine.context import EvalContext
from careplan_rules.engine.expressions import evaluate_when
from careplan_rules.errors import CarePlanRulesError, EvaluationError
from careplan_rules.facts import PatientRecord
from careplan_rules.findings import AppliedEscalation, CriterionResult, Indicator, RuleOutcome, SeverityLevel

T = TypeVar("T")
P = ParamSpec("P")


class PythonBackend:
    name = "python"

    def evaluate(
        self, ruleset: RuleSet, record: PatientRecord, now: datetime, *, trace: bool = False
    ) -> tuple[RuleOutcome, ...]:
        run = Evaluation(ruleset, record, now, trace)
        for rule in ruleset.rules:
            ctx = run.context(rule)
            run.outcomes[rule.id] = run.guarded(rule, evaluate_rule, rule, ctx)
        return run.result()


@dataclass(slots=True)
class Evaluation:
    """One patient's evaluation: a context per pack and the outcomes of the rules run so far.

    Contexts share one ``outcomes`` dict, so a finding criterion sees the rules of any pack
    that ran before it (the rule set is in dependency order).
    """

    ruleset: RuleSet
    record: PatientRecord
    now: datetime
    trace: bool = False
    outcomes: dict[str, RuleOutcome] = field(default_factory=dict)
    _contexts: dict[str, EvalContext] = field(default_factory=dict)

    def context(self, rule: CompiledRule) -> EvalContext:
        pack_id = rule.source.pack_id
        ctx = self._contexts.get(pack_id)
        if ctx is None:
            ctx = EvalContext(self.record, self.now, self.ruleset.registries[pack_id], self.trace, self.outcomes)
            self._contexts[pack_id] = ctx
        return ctx

    def guarded(self, rule: CompiledRule, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one rule's step; a bug surfaces as an :class:`EvaluationError`, never as "did not fire".

        Raises:
            EvaluationError: wrapping any unexpected exception (library errors pass through).
        """
        try:
            return step(*args, **kwargs)
        except CarePlanRulesError:
            raise
        except Exception as exc:
            raise EvaluationError(
                f"rule {rule.id!r} failed for {self.record.patient_ref}: {type(exc).__name__}: {exc}"
            ) from exc

    def result(self) -> tuple[RuleOutcome, ...]:
        return tuple(self.outcomes[r.id] for r in self.ruleset.rules)


def evaluate_rule(rule: CompiledRule, ctx: EvalContext) -> RuleOutcome:
    results = criterion_results(rule, ctx)
    verdict = evaluate_when(rule.when, results, rule.params)
    if not verdict.holds:
        return RuleOutcome(rule.id, False, results)
    escalations = rule.escalations
    activities = rule.source.activity_whens

    def escalation_holds(index: int) -> bool:
        when = escalations[index].when
        assert when is not None
        return evaluate_when(when, results, rule.params).holds

    def activity_holds(index: int) -> bool:
        when = activities[index]
        assert when is not None
        return evaluate_when(when, results, rule.params).holds

    return build_outcome(rule, results, verdict.restricted, escalation_holds, activity_holds)


def criterion_results(rule: CompiledRule, ctx: EvalContext) -> dict[str, CriterionResult]:
    """Every criterion of ``rule`` over all of the patient's facts, in dependency order."""
    results: dict[str, CriterionResult] = {}
    for criterion in rule.criteria:
        results[criterion.name] = criterion.evaluate(ctx, results)
    return results


def build_outcome(
    rule: CompiledRule,
    results: dict[str, CriterionResult],
    restricted: dict[str, set[str]],
    escalation_holds: Callable[[int], bool],
    activity_holds: Callable[[int], bool],
) -> RuleOutcome:
    """The outcome of a rule that fired: grade, escalations, implicated records, activities.

    Args:
        results: the rule's criterion results.
        restricted: overlaps-join restrictions from the ``when`` verdict.
        escalation_holds: whether the ``when`` of escalation ``i`` holds (asked lazily, in order,
            only for ``when``-based escalations).
        activity_holds: whether the ``when`` of care-plan activity ``i`` holds (asked only for
            activities that have one).
    """
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
        if escalation_holds(esc.index):
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
        allowed = restricted.get(name)
        for match in result.matches:
            if match.outcome is not None:
                implicated.update(match.outcome.implicated)
            elif allowed is None or match.ref in allowed:
                implicated.add(match.ref)
    activities = tuple(i for i, when in enumerate(rule.source.activity_whens) if when is None or activity_holds(i))
    return RuleOutcome(
        rule.id,
        True,
        results,
        severity,
        indicator,
        tuple(applied),
        tuple(sorted(implicated)),
        activities,
        {k: frozenset(v) for k, v in restricted.items()},
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
