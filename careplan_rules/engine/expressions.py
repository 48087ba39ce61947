"""Evaluate ``when`` expressions over criterion results.

Negation is evaluated over the complete, precomputed criterion results, so the answer never
depends on the order facts arrived in (the defect that disqualified durable_rules as the
default backend: research/durable-rules.md §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from careplan_rules.engine.params import resolve_duration, resolve_number
from careplan_rules.findings import CriterionResult, Match
from careplan_rules.model.rule import ParamValue
from careplan_rules.model.when import All, AnyOf, Count, DailyMme, Not, Overlaps, Ref, WhenExpr
from careplan_rules.temporal import Duration


@dataclass(slots=True)
class WhenOutcome:
    holds: bool
    # for overlaps joins: the matches of each side that take part in an overlapping pair
    restricted: dict[str, set[str]] = field(default_factory=dict)


def evaluate_when(
    expr: WhenExpr, results: Mapping[str, CriterionResult], params: Mapping[str, ParamValue]
) -> WhenOutcome:
    out = WhenOutcome(False)
    out.holds = _eval(expr, results, params, out)
    return out


def _eval(
    expr: WhenExpr, results: Mapping[str, CriterionResult], params: Mapping[str, ParamValue], out: WhenOutcome
) -> bool:
    if isinstance(expr, Ref):
        return results[expr.name].holds
    if isinstance(expr, All):
        return all(_eval(e, results, params, out) for e in expr.items)
    if isinstance(expr, AnyOf):
        # evaluate every branch (no short-circuit) so joins in later branches are recorded
        values = [_eval(e, results, params, out) for e in expr.items]
        return any(values)
    if isinstance(expr, Not):
        scratch = WhenOutcome(False)
        return not _eval(expr.item, results, params, scratch)
    if isinstance(expr, Count):
        n = len(results[expr.of.name].distinct())
        if expr.at_least is not None and n < resolve_number(expr.at_least, params):
            return False
        return not (expr.at_most is not None and n > resolve_number(expr.at_most, params))
    if isinstance(expr, DailyMme):
        return results[expr.of.name].daily_mme() >= resolve_number(expr.at_least, params)
    if isinstance(expr, Overlaps):
        grace = resolve_duration(expr.within, params) if expr.within else None
        first, second = results[expr.first.name], results[expr.second.name]
        pairs = [(a, b) for a in first.matches for b in second.matches if a.ref != b.ref and _overlap(a, b, grace)]
        if pairs:
            out.restricted.setdefault(expr.first.name, set()).update(a.ref for a, _ in pairs)
            out.restricted.setdefault(expr.second.name, set()).update(b.ref for _, b in pairs)
        return bool(pairs)
    raise TypeError(f"unknown expression {expr!r}")  # pragma: no cover


def _overlap(a: Match, b: Match, grace: Duration | None) -> bool:
    """Two exposures overlap in time (an open end means still running)."""

    def end(m: Match) -> datetime | None:
        if m.end is None:
            return None
        return grace.after(m.end) if grace is not None else m.end

    a_start, b_start = a.start, b.start
    a_end, b_end = end(a), end(b)
    if a_start is not None and b_end is not None and b_end < a_start:
        return False
    return not (b_start is not None and a_end is not None and a_end < b_start)
