"""Semantic coverage of rule tests: per rule and per criterion, never per line.

OPA's line coverage drew a steady stream of "coverage depends on formatting" complaints
(open-policy-agent/opa #4393, #6531, #8813). What a reviewer wants to know is: was each rule
seen firing and not firing, and was each criterion seen both true and false, each escalation
applied, each proposed activity produced?
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from careplan_rules.loader.pack import Pack
from careplan_rules.testing.runner import PASS, CaseResult


@dataclass(slots=True)
class RuleCoverage:
    rule: str
    status: str
    fire: int = 0
    no_fire: int = 0
    todo: int = 0
    failed: int = 0
    criteria_true: dict[str, bool] = field(default_factory=dict)
    criteria_false: dict[str, bool] = field(default_factory=dict)
    escalations: dict[str, bool] = field(default_factory=dict)
    activities: dict[str, bool] = field(default_factory=dict)

    @property
    def points(self) -> tuple[int, int]:
        items = [
            *self.criteria_true.values(),
            *self.criteria_false.values(),
            *self.escalations.values(),
            *self.activities.values(),
        ]
        return sum(1 for x in items if x), len(items)

    @property
    def percent(self) -> float:
        covered, total = self.points
        return 100.0 if total == 0 else 100.0 * covered / total

    @property
    def missing_pair(self) -> bool:
        """An active rule needs at least one passing firing and one passing non-firing case."""
        return self.status == "active" and (self.fire == 0 or self.no_fire == 0)

    def gaps(self) -> list[str]:
        out = []
        out += [f"criterion {n} never true" for n, seen in self.criteria_true.items() if not seen]
        out += [f"criterion {n} never false" for n, seen in self.criteria_false.items() if not seen]
        out += [f"escalation {n} never applied" for n, seen in self.escalations.items() if not seen]
        out += [f"activity {n} never proposed" for n, seen in self.activities.items() if not seen]
        if self.fire == 0:
            out.append("no passing 'fire' case")
        if self.no_fire == 0:
            out.append("no passing 'no-fire' case")
        return out

    def to_json(self) -> dict[str, Any]:
        covered, total = self.points
        return {
            "rule": self.rule,
            "status": self.status,
            "fire": self.fire,
            "noFire": self.no_fire,
            "todo": self.todo,
            "failed": self.failed,
            "covered": covered,
            "total": total,
            "percent": round(self.percent, 1),
            "gaps": self.gaps(),
        }


def coverage(
    packs: Sequence[Pack], results: Iterable[CaseResult], tested_rules: Iterable[str] | None = None
) -> list[RuleCoverage]:
    """Coverage of every rule of the packs (or only ``tested_rules``)."""
    rules = {r.id: r for p in packs for r in p.rules}
    wanted = set(tested_rules) if tested_rules is not None else set(rules)
    table: dict[str, RuleCoverage] = {}
    for rid in sorted(wanted & set(rules)):
        model = rules[rid].model
        cov = RuleCoverage(rid, model.status)
        cov.criteria_true = dict.fromkeys(model.criteria, False)
        cov.criteria_false = dict.fromkeys(model.criteria, False)
        cov.escalations = {f"#{i + 1} ({e.reason[:40]})": False for i, e in enumerate(model.escalate)}
        cov.activities = {a.id: False for a in model.outputs.careplan_activities}
        table[rid] = cov
    for result in results:
        found = table.get(result.rule)
        if found is None:
            continue
        cov = found
        if result.failed:
            cov.failed += 1
        elif result.status == PASS and result.expect == "fire":
            cov.fire += 1
        elif result.status == PASS and result.expect == "no-fire":
            cov.no_fire += 1
        elif result.status.startswith("todo"):
            cov.todo += 1
        outcome = result.outcome
        if outcome is None:
            continue
        for name, crit in outcome.criteria.items():
            if crit.holds:
                cov.criteria_true[name] = True
            else:
                cov.criteria_false[name] = True
        keys = list(cov.escalations)
        for applied in outcome.escalations:
            index = int(applied.reason_key.split(".")[1])
            if index < len(keys):
                cov.escalations[keys[index]] = True
        model = rules[result.rule].model
        for i in outcome.activities:
            cov.activities[model.outputs.careplan_activities[i].id] = True
    return list(table.values())
