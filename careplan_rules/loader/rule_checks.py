"""Semantic checks of one rule against its pack: names, value sets, params, durations, templates.

These run at load time because a rule that refers to something that does not exist cannot be
evaluated honestly: an unknown value set evaluated as an empty set would silently stop a
warning from firing (the CQL engines learned this the hard way, cql-engine#459).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from careplan_rules.diagnostics import Diagnostic, did_you_mean
from careplan_rules.loader.yaml_reader import YamlDocument
from careplan_rules.model.common import ValueSetRef, YamlPath
from careplan_rules.model.rule import Criterion, NumberFilter, RuleModel
from careplan_rules.model.template import Template, TemplateSyntaxError, check_placeholder, parse_template
from careplan_rules.model.when import WhenExpr, params_used, parse_when, references
from careplan_rules.temporal import parse_duration

MATCH_KINDS = {"exposure", "condition", "observation", "careplan"}


@dataclass
class RuleCheck:
    """Collects diagnostics for one rule file."""

    rule: RuleModel
    doc: YamlDocument
    valueset_versions: Mapping[str, str]
    rule_ids: set[str]
    diagnostics: list[Diagnostic]
    broken_valuesets: set[str]  # defined in files that failed to load: already reported
    broken_rules: set[str]

    def error(self, code: str, message: str, path: YamlPath, hint: str | None = None, key: bool = False) -> None:
        self.diagnostics.append(
            Diagnostic(code, message, location=self.doc.location(path, key=key), rule_id=self.rule.id, hint=hint)
        )

    # -- entry point ---------------------------------------------------------------------------

    def run(self) -> tuple[WhenExpr | None, list[WhenExpr | None], list[WhenExpr | None], dict[str, Template]]:
        rule = self.rule
        criteria = rule.criteria
        self._reported: set[tuple[str, YamlPath]] = set()
        for name, criterion in criteria.items():
            self._criterion(name, criterion, ("criteria", name))
        when = self._when(rule.when, ("when",))
        escalations: list[WhenExpr | None] = []
        path: YamlPath
        for i, esc in enumerate(rule.escalate):
            path = ("escalate", i)
            if esc.inherit is not None:
                self._criterion_ref(esc.inherit, (*path, "inherit"))
                kind = criteria[esc.inherit].kind if esc.inherit in criteria else None
                if kind is not None and kind != "finding":
                    self.error(
                        "CPR-E017",
                        f"'inherit' needs a finding criterion; {esc.inherit!r} is a {kind} criterion",
                        (*path, "inherit"),
                    )
                escalations.append(None)
            else:
                escalations.append(self._when(esc.when, (*path, "when")))
        implicated = rule.outputs.detected_issue.implicated or []
        for i, name in enumerate(implicated):
            self._criterion_ref(name, ("outputs", "detected_issue", "implicated", i))
        activity_whens: list[WhenExpr | None] = []
        for i, activity in enumerate(rule.outputs.careplan_activities):
            path = ("outputs", "careplan_activities", i)
            for j, name in enumerate(activity.addresses):
                if self._criterion_ref(name, (*path, "addresses", j)) and criteria[name].kind != "condition":
                    self.error(
                        "CPR-E017",
                        f"'addresses' lists conditions; {name!r} is a {criteria[name].kind} criterion",
                        (*path, "addresses", j),
                    )
            activity_whens.append(self._when(activity.when, (*path, "when")) if activity.when is not None else None)
            if activity.scheduled is not None:
                self._duration(activity.scheduled.within, (*path, "scheduled", "within"))
        templates = self._templates()
        return when, escalations, activity_whens, templates

    # -- pieces --------------------------------------------------------------------------------

    def _criterion_ref(self, name: str, path: YamlPath) -> bool:
        if name in self.rule.criteria:
            return True
        guess = did_you_mean(name, self.rule.criteria)
        self.error(
            "CPR-E010",
            f"criterion {name!r} is not defined in this rule",
            path,
            hint=f"did you mean {guess!r}?"
            if guess
            else (f"defined: {', '.join(self.rule.criteria)}" if self.rule.criteria else "'criteria' is empty"),
        )
        return False

    def _param(self, ref: str, path: YamlPath) -> Any:
        name = ref[1:]
        if name in self.rule.params:
            return self.rule.params[name]
        guess = did_you_mean(name, self.rule.params)
        self.error(
            "CPR-E012",
            f"param {ref!r} is not declared under 'params'",
            path,
            hint=f"did you mean '${guess}'?" if guess else None,
        )
        return None

    def _duration(self, text: Any, path: YamlPath) -> None:
        where = path
        if isinstance(text, str) and text.startswith("$"):
            value = self._param(text, path)
            if value is None:
                return
            text, where = value, ("params", text[1:])
            if ("CPR-E013", where) in self._reported:
                return
        try:
            parse_duration(text)
        except ValueError as exc:
            self._reported.add(("CPR-E013", where))
            suffix = f" (used as a duration at line {self.doc.location(path).line})" if where != path else ""
            self.error("CPR-E013", f"{exc}{suffix}", where)

    def _number(self, value: Any, path: YamlPath) -> None:
        if isinstance(value, str):
            if value.startswith("$"):
                resolved = self._param(value, path)
                if resolved is not None and not isinstance(resolved, int | float):
                    self.error("CPR-E002", f"param {value!r} must be a number, got {resolved!r}", path)
            else:
                self.error("CPR-E002", f"expected a number or a $param, got {value!r}", path)

    def _valueset(self, ref: ValueSetRef, path: YamlPath) -> None:
        vs_id, _, version = ref.in_.partition("|")
        if vs_id in self.broken_valuesets:
            return
        if vs_id not in self.valueset_versions:
            guess = did_you_mean(vs_id, self.valueset_versions)
            self.error(
                "CPR-E020",
                f"value set {vs_id!r} is not defined in this pack",
                (*path, "in"),
                hint=f"did you mean {guess!r}?" if guess else None,
            )
        elif version and self.valueset_versions[vs_id] != version:
            self.error(
                "CPR-E023",
                f"rule pins value set {vs_id!r} version {version!r} but the pack has {self.valueset_versions[vs_id]!r}",
                (*path, "in"),
            )

    def _filter(self, flt: NumberFilter, path: YamlPath) -> None:
        for key in ("gt", "gte", "lt", "lte", "eq"):
            value = getattr(flt, key)
            if value is not None:
                self._number(value, (*path, key))

    def _criterion(self, name: str, criterion: Criterion, path: YamlPath) -> None:
        kind = criterion.kind
        spec = getattr(criterion, kind)
        sub = (*path, kind)
        if criterion.exposure is not None:
            self._valueset(criterion.exposure.medication, (*sub, "medication"))
            if criterion.exposure.lookback is not None:
                self._duration(criterion.exposure.lookback, (*sub, "lookback"))
            if criterion.exposure.started_within is not None:
                self._duration(criterion.exposure.started_within, (*sub, "started_within"))
        elif criterion.condition is not None:
            self._valueset(criterion.condition.code, (*sub, "code"))
            if criterion.condition.lookback is not None:
                self._duration(criterion.condition.lookback, (*sub, "lookback"))
        elif criterion.observation is not None:
            obs = criterion.observation
            self._valueset(obs.code, (*sub, "code"))
            if isinstance(obs.value, ValueSetRef):
                self._valueset(obs.value, (*sub, "value"))
            elif isinstance(obs.value, NumberFilter):
                self._filter(obs.value, (*sub, "value"))
            if obs.within is not None:
                self._duration(obs.within, (*sub, "within"))
        elif criterion.review is not None:
            review = criterion.review
            if review.code is not None:
                self._valueset(review.code, (*sub, "code"))
            for i, target in enumerate(review.targets):
                self._match_ref(target, (*sub, "targets", i), name)
            if review.after is not None:
                self._match_ref(review.after, (*sub, "after"), name)
            if review.within is not None:
                self._duration(review.within, (*sub, "within"))
        elif criterion.patient is not None and criterion.patient.age is not None:
            self._filter(criterion.patient.age, (*sub, "age"))
        elif criterion.finding is not None:
            for i, rule_id in enumerate(spec.rules):
                if rule_id == self.rule.id:
                    self.error("CPR-E016", "a rule cannot depend on its own findings", (*sub, "rules", i))
                elif rule_id not in self.rule_ids and rule_id not in self.broken_rules:
                    guess = did_you_mean(rule_id, self.rule_ids)
                    self.error(
                        "CPR-E015",
                        f"rule {rule_id!r} is not defined in this pack",
                        (*sub, "rules", i),
                        hint=f"did you mean {guess!r}?" if guess else None,
                    )

    def _match_ref(self, target: str, path: YamlPath, owner: str) -> None:
        if target == owner:
            self.error("CPR-E017", "a review criterion cannot refer to itself", path)
            return
        if self._criterion_ref(target, path):
            kind = self.rule.criteria[target].kind
            if kind not in MATCH_KINDS:
                self.error(
                    "CPR-E017",
                    f"{target!r} is a {kind} criterion; expected one that matches records "
                    f"({', '.join(sorted(MATCH_KINDS))})",
                    path,
                )

    def _when(self, data: Any, path: YamlPath) -> WhenExpr | None:
        expr, problems = parse_when(data, path)
        for problem in problems:
            self.error("CPR-E014", problem.message, problem.path, key=problem.at_key)
        if expr is None:
            return None
        ok = True
        for ref in references(expr):
            ok = self._criterion_ref(ref.name, ref.path) and ok
        for param, ppath in params_used(expr):
            value = self._param(param, ppath)
            if value is not None and isinstance(value, str) and value.startswith("P"):
                self._duration(value, ppath)
        return expr if ok else None

    def _templates(self) -> dict[str, Template]:
        out: dict[str, Template] = {}
        rule = self.rule
        params = set(rule.params)
        criteria = set(rule.criteria)
        for key, text, path in _template_sources(rule):
            try:
                template = parse_template(text)
            except TemplateSyntaxError as exc:
                self.error("CPR-E032", str(exc), path)
                continue
            for part in template.parts:
                if isinstance(part, str):
                    continue
                for ref in part.chain():
                    problem = check_placeholder(ref, criteria, params)
                    if problem:
                        self.error("CPR-E032", problem, path)
            out[key] = template
        return out


def _template_sources(rule: RuleModel) -> Iterator[tuple[str, str, YamlPath]]:
    yield "summary", rule.outputs.summary, ("outputs", "summary")
    yield "detail", rule.outputs.detail, ("outputs", "detail")
    for i, esc in enumerate(rule.escalate):
        yield f"escalate.{i}.reason", esc.reason, ("escalate", i, "reason")
    for i, act in enumerate(rule.outputs.careplan_activities):
        yield f"activity.{i}.title", act.title, ("outputs", "careplan_activities", i, "title")
        if act.description:
            yield f"activity.{i}.description", act.description, ("outputs", "careplan_activities", i, "description")


def dependency_cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Cycles in the 'rule depends on findings of rule' graph."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt in graph and state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node)
    return cycles
