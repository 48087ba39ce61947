"""Compile loaded rules into an immutable :class:`RuleSet`.

Compiling resolves value sets and params once, orders criteria so that a review criterion
runs after the criteria it refers to, orders rules so that a rule reading another rule's
findings runs after it, and works out which FHIR resource types the rules read (only those
are validated and normalised on the evaluate path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.engine.criteria import CompiledCriterion, compile_criterion
from careplan_rules.errors import CarePlanRulesError, RuleLoadError
from careplan_rules.findings import Indicator, SeverityLevel
from careplan_rules.loader.pack import LoadedRule, Pack
from careplan_rules.model.rule import MEDICATION_SOURCES, ParamValue
from careplan_rules.model.when import WhenExpr, positive_references
from careplan_rules.terminology.registry import ValueSetRegistry

REVIEW_TYPES = {
    "provenance": "Provenance",
    "procedure": "Procedure",
    "task": "Task",
    "detected-issue": "DetectedIssue",
    "careplan-activity": "CarePlan",
}


@dataclass(frozen=True, slots=True)
class CompiledEscalation:
    index: int
    when: WhenExpr | None
    inherit: str | None
    severity: SeverityLevel | None
    indicator: Indicator | None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    source: LoadedRule
    params: Mapping[str, ParamValue]
    criteria: tuple[CompiledCriterion, ...]
    when: WhenExpr
    severity: SeverityLevel
    indicator: Indicator
    escalations: tuple[CompiledEscalation, ...]
    implicated: tuple[str, ...]
    depends_on: tuple[str, ...]
    read_types: frozenset[str]

    @property
    def id(self) -> str:
        return self.source.model.id

    @property
    def version(self) -> str:
        return self.source.model.version


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    packs: tuple[Pack, ...]
    registries: Mapping[str, ValueSetRegistry]
    read_types: frozenset[str]
    # outputs look rules up by id about twenty times per patient with findings
    _by_id: Mapping[str, CompiledRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[str, CompiledRule] = {}
        for r in self.rules:
            by_id.setdefault(r.id, r)  # the first, as a scan in order would find
        object.__setattr__(self, "_by_id", by_id)

    def rule(self, rule_id: str) -> CompiledRule | None:
        return self._by_id.get(rule_id)


def _read_types(rule: LoadedRule) -> set[str]:
    types: set[str] = set()
    for criterion in rule.model.criteria.values():
        if criterion.exposure is not None:
            types.update(criterion.exposure.from_)
            if set(criterion.exposure.from_) & set(MEDICATION_SOURCES):
                types.add("Medication")
        elif criterion.condition is not None:
            types.add("Condition")
        elif criterion.observation is not None:
            types.add("Observation")
        elif criterion.review is not None:
            types.update(REVIEW_TYPES[k] for k in criterion.review.kinds)
        elif criterion.careplan is not None:
            types.add("CarePlan")
        elif criterion.patient is not None:
            types.add("Patient")
    return types


def _criteria_order(compiled: Mapping[str, CompiledCriterion]) -> tuple[CompiledCriterion, ...]:
    ordered: list[CompiledCriterion] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for dep in compiled[name].depends_on():
            visit(dep)
        ordered.append(compiled[name])

    for name in compiled:
        visit(name)
    return tuple(ordered)


def compile_rule(
    rule: LoadedRule, registry: ValueSetRegistry, overrides: Mapping[str, ParamValue] | None = None
) -> CompiledRule:
    model = rule.model
    params: dict[str, ParamValue] = dict(model.params)
    for key, value in (overrides or {}).items():
        if key not in params:
            raise RuleLoadError(
                f"rule {model.id!r} has no param {key!r} to override (params: {', '.join(params) or 'none'})"
            )
        params[key] = value
    compiled = {name: compile_criterion(name, c, registry, params) for name, c in model.criteria.items()}
    escalations = tuple(
        CompiledEscalation(
            i,
            rule.escalations[i],
            esc.inherit,
            SeverityLevel.of(esc.severity) if esc.severity else None,
            Indicator.of(esc.indicator) if esc.indicator else None,
        )
        for i, esc in enumerate(model.escalate)
    )
    implicated = model.outputs.detected_issue.implicated
    if implicated is None:
        implicated = list(dict.fromkeys(r.name for r in positive_references(rule.when)))
    depends = tuple(
        dict.fromkeys(rid for c in model.criteria.values() if c.finding is not None for rid in c.finding.rules)
    )
    return CompiledRule(
        source=rule,
        params=params,
        criteria=_criteria_order(compiled),
        when=rule.when,
        severity=SeverityLevel.of(model.severity),
        indicator=Indicator.of(model.indicator),
        escalations=escalations,
        implicated=tuple(implicated),
        depends_on=depends,
        read_types=frozenset(_read_types(rule)),
    )


def compile_packs(
    packs: Sequence[Pack],
    *,
    params: Mapping[str, Mapping[str, ParamValue]] | None = None,
    include_draft: bool = False,
    only: Iterable[str] | None = None,
) -> RuleSet:
    """Compile the rules of several packs into one rule set.

    Args:
        params: per-rule param overrides, ``{rule_id: {param: value}}``.
        include_draft: also evaluate ``status: draft`` rules (rule tests do).
        only: restrict to these rule ids (and the rules they depend on).

    Raises:
        RuleLoadError: duplicate rule ids across packs, bad overrides, or a rule that depends
            on a rule that is not enabled.
    """
    overrides = dict(params or {})
    registries: dict[str, ValueSetRegistry] = {}
    selected: dict[str, tuple[LoadedRule, Pack]] = {}
    problems: list[Diagnostic] = []
    for pack in packs:
        if pack.id in registries:
            raise RuleLoadError(f"pack {pack.id!r} is loaded twice")
        registries[pack.id] = ValueSetRegistry(
            pack.id, {k: v.model for k, v in pack.valuesets.items()}, pack.ingredient_map, pack.mme_table
        )
        for rule in pack.rules:
            status = rule.model.status
            if status == "retired" or (status == "draft" and not include_draft):
                continue
            if rule.id in selected:
                other = selected[rule.id][0]
                problems.append(
                    Diagnostic(
                        "CPR-E060",
                        f"rule id {rule.id!r} is defined by pack {other.pack_id!r} ({other.file}) "
                        f"and pack {pack.id!r}; rule ids must be unique across loaded packs",
                        location=rule.doc.location(("id",)),
                        rule_id=rule.id,
                    )
                )
                continue
            selected[rule.id] = (rule, pack)
    unknown = set(overrides) - set(selected)
    if unknown:
        raise RuleLoadError(f"param overrides name unknown rule(s): {', '.join(sorted(unknown))}")
    if problems:
        raise RuleLoadError(problems[0].render(), problems)
    wanted = set(selected) if only is None else set(only)
    missing = wanted - set(selected)
    if missing:
        raise RuleLoadError(f"unknown rule id(s): {', '.join(sorted(missing))}")
    compiled: dict[str, CompiledRule] = {}
    try:
        for rule_id, (rule, pack) in selected.items():
            compiled[rule_id] = compile_rule(rule, registries[pack.id], overrides.get(rule_id))
    except CarePlanRulesError as exc:
        raise RuleLoadError(f"cannot compile rules: {exc}", exc.diagnostics) from exc
    order: list[CompiledRule] = []
    done: set[str] = set()

    def visit(rule_id: str, chain: tuple[str, ...]) -> None:
        if rule_id in done:
            return
        if rule_id not in compiled:
            raise RuleLoadError(
                f"rule {chain[-1]!r} reads findings of rule {rule_id!r}, which is not enabled "
                "(draft, retired or not loaded)"
            )
        done.add(rule_id)
        for dep in compiled[rule_id].depends_on:
            visit(dep, (*chain, rule_id))
        order.append(compiled[rule_id])

    for rule_id in sorted(wanted):
        visit(rule_id, (rule_id,))
    read_types = frozenset().union(*(r.read_types for r in order)) if order else frozenset()
    return RuleSet(tuple(order), tuple(packs), registries, read_types)
