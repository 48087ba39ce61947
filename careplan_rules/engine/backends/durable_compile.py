"""Compile rules into a durable_rules ruleset: each decision as Rete patterns over per-criterion facts.

What the Rete engine decides: whether a rule's ``when`` holds, and whether each ``when``-based
escalation and care-plan activity condition holds. What stays in Python, shared with the python
backend: the criteria themselves (value-set membership, status and time windows, review
matching), distinct counts, daily MME totals and ``overlaps`` joins.

Each evaluation asserts one *atom fact* per criterion that a decision reads. The fact carries
``v`` (the criterion holds), plus ``n`` (the number of distinct drugs or concepts matched) when
a ``count`` reads it and ``m`` (the daily MME) when a ``daily_mme`` reads it. The engine compares
those numbers. A leaf the engine cannot compare, an ``overlaps`` join (a pairwise date test) or
any leaf kind added to the language later, becomes an atom whose ``v`` Python decides with the
shared evaluator. Every atom fact is always present, so ``not`` becomes the positive test
``v == false``: the engine never evaluates a negation, so no answer depends on the order facts
arrive in (research/durable-rules.md §4 D1, §6 point 9).

A decision is put in disjunctive normal form; each conjunction becomes one durable rule whose
``all`` lists one pattern per atom. That is only flat ``all`` joins over equality and
relational tests, the subset the research exercised. There are no ``$not``, nested
``$any``/``$all``, ``$iany``, ``$in`` or date comparisons (research §2.1, D1, D13, D14).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.engine.compiler import CompiledRule, RuleSet
from careplan_rules.engine.expressions import evaluate_when
from careplan_rules.engine.params import resolve_number
from careplan_rules.errors import CarePlanRulesError, RuleLoadError
from careplan_rules.findings import CriterionResult
from careplan_rules.loader.pack import LoadedRule
from careplan_rules.model.common import YamlPath
from careplan_rules.model.rule import ParamValue
from careplan_rules.model.when import All, AnyOf, Count, DailyMme, Not, Ref, WhenExpr, references

UNSUPPORTED_CODE = "CPR-E070"

# durable_rules keeps at most 16 message frames per rule (MAX_MESSAGE_FRAMES in state.h;
# research §6 point 2), so a conjunction may join at most 16 atom facts.
MAX_PATTERNS_PER_RULE = 16
# Our own bound on disjunctive normal form: nested any/not can expand exponentially, and every
# alternative is one more durable rule.
MAX_ALTERNATIVES = 64
# Every conjunction of a rule that uses the same atom pattern adds one beta node to that
# pattern's alpha node, which holds at most 256 (BETA_LIST_LENGTH; research D13: a hang at 256
# rules sharing one pattern). Atoms are per rule, so this bounds the conjunctions of one rule.
MAX_CONJUNCTIONS_PER_RULE = 200
# create_ruleset fails with error 106 at 4096 actions (MAX_ACTIONS in rete.c); 2000 durable
# rules and 4000 atoms were measured to build and evaluate correctly, so that is the budget.
MAX_DURABLE_RULES = 2000
MAX_ATOMS = 4000
# Atom facts are discriminated by ``t`` (a group) and then ``a`` (the atom id). An alpha node
# probes its children linearly in a 512-slot table and create_ruleset hangs when it is full
# (research D13), so no node gets more than max(MAX_ATOMS / ATOMS_PER_GROUP, ATOMS_PER_GROUP)
# children.
ATOMS_PER_GROUP = 32

Lit = tuple[int, str, str, bool | float]  # (atom, field, operator, value)
Conj = frozenset[Lit]
Test = tuple[str, str, bool | float]  # (field, operator, value)
Conjunction = tuple[tuple[int, tuple[Test, ...]], ...]  # per atom (local index): its tests
Problem = tuple[YamlPath, str]


@dataclass(frozen=True, slots=True)
class Atom:
    """One fact per evaluation: a criterion's verdict (and count, daily MME), or a leaf decided in Python."""

    criterion: str
    leaf: WhenExpr | None = None  # decided by the shared Python evaluator (overlaps, future kinds)
    counted: bool = False
    mme: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """A condition the Rete engine decides: ``when``, ``escalate.<i>`` or ``activity.<i>``."""

    point: str
    conjunctions: tuple[Conjunction, ...]


@dataclass(frozen=True, slots=True)
class RulePlan:
    """How one rule's decisions are compiled: its atoms and the conjunctions over them."""

    rule_id: str
    atoms: tuple[Atom, ...]
    decisions: tuple[Decision, ...]
    python_leaves: bool  # ``when`` has leaves decided in Python, which may restrict implicated records

    def atom_facts(
        self, base: int, results: Mapping[str, CriterionResult], params: Mapping[str, ParamValue]
    ) -> list[dict[str, Any]]:
        """The facts to assert for this rule, given its criterion results.

        Args:
            base: the global id of the rule's first atom.
            results: the rule's criterion results (computed by the shared Python code).
            params: the rule's params (for leaves decided in Python, e.g. ``overlaps ... within: $param``).
        """
        facts: list[dict[str, Any]] = []
        for i, atom in enumerate(self.atoms):
            gid = base + i
            fact: dict[str, Any] = {"t": _group(gid), "a": gid}
            if atom.leaf is not None:
                fact["v"] = evaluate_when(atom.leaf, results, params).holds
            else:
                result = results[atom.criterion]
                fact["v"] = result.holds
                if atom.counted:
                    fact["n"] = len(result.distinct())
                if atom.mme:
                    fact["m"] = result.daily_mme()
            facts.append(fact)
        return facts


@dataclass(frozen=True, slots=True)
class DurableProgram:
    """A whole rule set compiled for durable_rules (pure data: picklable, shared by workers)."""

    rules: Mapping[str, Any]  # the durable ruleset, without the driver's sentinel rule
    plans: tuple[RulePlan, ...]  # aligned with RuleSet.rules
    bases: tuple[int, ...]  # first global atom id of each rule
    layers: tuple[tuple[int, ...], ...]  # rule indexes; a layer reads findings of earlier layers only
    names: Mapping[str, tuple[int, str]]  # durable rule name -> (rule index, decision point)

    @property
    def rules_json(self) -> str:
        return json.dumps(self.rules, sort_keys=True)


class _Unsupported(Exception):
    pass


def _group(gid: int) -> str:
    return f"g{gid // ATOMS_PER_GROUP}"


class _Planner:
    def __init__(self, params: Mapping[str, ParamValue]) -> None:
        self.params = params
        self.keys: dict[object, int] = {}
        self.atoms: list[Atom] = []

    def atom(self, key: object, atom: Atom) -> int:
        index = self.keys.get(key)
        if index is None:
            index = self.keys[key] = len(self.atoms)
            self.atoms.append(atom)
        else:  # one fact per criterion carries every number any of its readers compares
            old = self.atoms[index]
            self.atoms[index] = Atom(old.criterion, old.leaf, old.counted or atom.counted, old.mme or atom.mme)
        return index

    def bound(self, value: float | str) -> float:
        try:
            return resolve_number(value, self.params)
        except CarePlanRulesError as exc:
            raise _Unsupported(f"threshold {value!r} cannot be resolved: {exc}") from None

    def dnf(self, expr: WhenExpr, negated: bool) -> list[Conj]:
        if isinstance(expr, Ref):
            a = self.atom(("criterion", expr.name), Atom(expr.name))
            return [frozenset({(a, "v", "eq", not negated)})]
        if isinstance(expr, Not):
            return self.dnf(expr.item, not negated)
        if isinstance(expr, Count):
            a = self.atom(("criterion", expr.of.name), Atom(expr.of.name, counted=True))
            low = self.bound(expr.at_least) if expr.at_least is not None else None
            high = self.bound(expr.at_most) if expr.at_most is not None else None
            if negated:  # n < low or n > high
                alternatives: list[Conj] = []
                if low is not None:
                    alternatives.append(frozenset({(a, "n", "lt", low)}))
                if high is not None:
                    alternatives.append(frozenset({(a, "n", "gt", high)}))
                return alternatives
            lits: set[Lit] = set()
            if low is not None:
                lits.add((a, "n", "gte", low))
            if high is not None:
                lits.add((a, "n", "lte", high))
            return [frozenset(lits)]
        if isinstance(expr, All | AnyOf):
            parts = [self.dnf(item, negated) for item in expr.items]
            # De Morgan: a negated all is an any of negations, a negated any an all of them
            conjunctive = isinstance(expr, All) != negated
            return _product(parts) if conjunctive else _simplify([c for part in parts for c in part])
        if isinstance(expr, DailyMme):
            a = self.atom(("criterion", expr.of.name), Atom(expr.of.name, mme=True))
            return [frozenset({(a, "m", "lt" if negated else "gte", self.bound(expr.at_least))})]
        # overlaps, or a leaf kind this compiler has no encoding for: Python decides it
        name = next((r.name for r in references(expr)), "")
        a = self.atom(("leaf", id(expr)), Atom(name, leaf=expr))
        return [frozenset({(a, "v", "eq", not negated)})]


def _contradictory(conj: Conj) -> bool:
    """True when a conjunction asks one atom to both hold and not hold."""
    verdicts = {(atom, value) for atom, fld, _, value in conj if fld == "v"}
    return len({atom for atom, _ in verdicts}) < len(verdicts)


def _simplify(conjs: list[Conj]) -> list[Conj]:
    """Drop contradictions, duplicates and conjunctions implied by a smaller one."""
    unique = sorted({c for c in conjs if not _contradictory(c)}, key=lambda c: (len(c), sorted(c)))
    kept: list[Conj] = []
    for conj in unique:
        if not any(k <= conj for k in kept):
            kept.append(conj)
    if len(kept) > MAX_ALTERNATIVES:
        raise _Unsupported(f"it expands to more than {MAX_ALTERNATIVES} alternatives (simplify the any/not nesting)")
    return kept


def _product(parts: list[list[Conj]]) -> list[Conj]:
    out: list[Conj] = [frozenset()]
    for alternatives in parts:
        out = _simplify([a | b for a in out for b in alternatives])
    return out


def _conjunction(conj: Conj) -> Conjunction:
    by_atom: dict[int, list[Test]] = {}
    for atom, fld, op, value in conj:
        by_atom.setdefault(atom, []).append((fld, op, value))
    return tuple((atom, tuple(sorted(tests))) for atom, tests in sorted(by_atom.items()))


def _has_python_leaves(expr: WhenExpr) -> bool:
    if isinstance(expr, All | AnyOf):
        return any(_has_python_leaves(e) for e in expr.items)
    if isinstance(expr, Not):
        return _has_python_leaves(expr.item)
    return not isinstance(expr, Ref | Count | DailyMme)


def plan_rule(
    rule_id: str,
    when: WhenExpr,
    escalations: Sequence[WhenExpr | None],
    activities: Sequence[WhenExpr | None],
    params: Mapping[str, ParamValue],
) -> tuple[RulePlan | None, list[Problem]]:
    """Plan one rule's decisions.

    Returns:
        The plan, or None with each reason the durable backend cannot express the rule (and the
        YAML path of the condition concerned).
    """
    planner = _Planner(params)
    points: list[tuple[str, YamlPath, WhenExpr]] = [("when", ("when",), when)]
    points += [(f"escalate.{i}", ("escalate", i, "when"), w) for i, w in enumerate(escalations) if w is not None]
    points += [
        (f"activity.{i}", ("outputs", "careplan_activities", i, "when"), w)
        for i, w in enumerate(activities)
        if w is not None
    ]
    problems: list[Problem] = []
    decisions: list[Decision] = []
    for point, path, expr in points:
        label = _label(path)
        try:
            conjs = [_conjunction(c) for c in planner.dnf(expr, False)]
        except _Unsupported as exc:
            problems.append((path, f"{label}: {exc}"))
            continue
        if any(not c for c in conjs):  # pragma: no cover - every leaf yields a test on some atom
            raise AssertionError(f"{label} compiled to an alternative without patterns")
        widest = max((len(c) for c in conjs), default=0)
        if widest > MAX_PATTERNS_PER_RULE:
            problems.append(
                (
                    path,
                    f"{label} joins {widest} criteria in one alternative; durable_rules allows at most "
                    f"{MAX_PATTERNS_PER_RULE} patterns per rule",
                )
            )
            continue
        decisions.append(Decision(point, tuple(conjs)))
    total = sum(len(d.conjunctions) for d in decisions)
    if total > MAX_CONJUNCTIONS_PER_RULE:
        problems.append(
            (
                ("when",),
                f"its conditions compile to {total} durable rules; at most {MAX_CONJUNCTIONS_PER_RULE} per rule "
                "can share one pattern safely",
            )
        )
    if problems:
        return None, problems
    return RulePlan(rule_id, tuple(planner.atoms), tuple(decisions), _has_python_leaves(when)), []


def _label(path: YamlPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def unsupported_reasons(rule: LoadedRule | CompiledRule) -> list[str]:
    """What a rule uses that the durable backend cannot express (empty when it can run it).

    The ``lint`` command reports each as "rule X cannot run on the durable backend: <reason>".

    Args:
        rule: a loaded rule (checked with its declared params) or a compiled one (with site
            overrides applied).

    Returns:
        Human-readable reasons, one per problem; an empty list when the rule is supported.
    """
    if isinstance(rule, CompiledRule):
        escalations = [e.when for e in rule.escalations]
        _, problems = plan_rule(rule.id, rule.when, escalations, rule.source.activity_whens, rule.params)
    else:
        _, problems = plan_rule(rule.id, rule.when, rule.escalations, rule.activity_whens, rule.model.params)
    return [text for _, text in problems]


def _layers(ruleset: RuleSet) -> tuple[tuple[int, ...], ...]:
    depth: dict[str, int] = {}
    for rule in ruleset.rules:  # dependency order: a rule's dependencies come first
        depth[rule.id] = 1 + max((depth[d] for d in rule.depends_on), default=-1)
    count = max(depth.values(), default=-1) + 1
    return tuple(tuple(i for i, r in enumerate(ruleset.rules) if depth[r.id] == k) for k in range(count))


def _pattern(gid: int, tests: tuple[Test, ...]) -> dict[str, Any]:
    terms: list[dict[str, Any]] = [{"t": _group(gid)}, {"a": gid}]
    for fld, op, value in tests:
        terms.append({fld: value} if op == "eq" else {f"${op}": {fld: value}})
    return {"$and": terms}


def compile_program(ruleset: RuleSet) -> DurableProgram:
    """Compile every rule of a rule set into one durable_rules ruleset.

    Raises:
        RuleLoadError: naming every rule the backend cannot express, or when the whole rule set
            exceeds what one durable_rules ruleset holds.
    """
    plans: list[RulePlan] = []
    problems: list[Diagnostic] = []
    for rule in ruleset.rules:
        escalations = [e.when for e in rule.escalations]
        plan, found = plan_rule(rule.id, rule.when, escalations, rule.source.activity_whens, rule.params)
        for path, reason in found:
            problems.append(
                Diagnostic(
                    UNSUPPORTED_CODE,
                    f"rule {rule.id!r} cannot run on the durable backend: {reason}",
                    location=rule.source.doc.location(path),
                    rule_id=rule.id,
                    hint="use the python backend, or simplify the rule",
                )
            )
        if plan is not None:
            plans.append(plan)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RuleLoadError(problems[0].render() + more, problems)
    rules: dict[str, Any] = {}
    names: dict[str, tuple[int, str]] = {}
    bases: list[int] = []
    next_atom = 0
    for index, plan in enumerate(plans):
        bases.append(next_atom)
        for decision in plan.decisions:
            for k, conj in enumerate(decision.conjunctions):
                name = f"r{index}_{decision.point.replace('.', '')}_{k}"
                rules[name] = {
                    "all": [{f"p{j}": _pattern(next_atom + atom, tests)} for j, (atom, tests) in enumerate(conj)]
                }
                names[name] = (index, decision.point)
        next_atom += len(plan.atoms)
    if len(rules) > MAX_DURABLE_RULES or next_atom > MAX_ATOMS:
        raise RuleLoadError(
            f"the {len(plans)} enabled rules compile to {len(rules)} durable_rules rules over {next_atom} facts; "
            f"the durable backend holds at most {MAX_DURABLE_RULES} rules and {MAX_ATOMS} facts per engine "
            "(durable_rules fails beyond 4095 rules: error 106). Use the python backend or load fewer rules."
        )
    return DurableProgram(rules, tuple(plans), tuple(bases), _layers(ruleset), names)
