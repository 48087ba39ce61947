"""The ``when`` language: a structured boolean expression over named criteria.

Grammar (YAML)::

    expr := criterion-name
          | {all: [expr, ...]}            every item holds
          | {any: [expr, ...]}            at least one item holds
          | {not: expr}                   absence: the item does not hold in the data supplied
          | {count: {of: name, at_least: n, at_most: n}}
                                          distinct drugs/concepts matched by a criterion
          | {overlaps: [a, b], within: duration}
          | {daily_mme: {of: name, at_least: n}}
                                          total morphine milligram equivalents per day of
                                          the criterion's matches, counting known doses only
                                          some match of a and some match of b were taken at
                                          overlapping times (optionally with a grace period)

Structured YAML instead of a string language: editors validate it against the JSON Schema,
there is no second parser with its own error messages, and it maps one-to-one onto the
``all``/``any``/``not`` of rule engines such as durable_rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from careplan_rules.diagnostics import did_you_mean
from careplan_rules.model.common import YamlPath


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    path: YamlPath


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[WhenExpr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[WhenExpr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: WhenExpr


@dataclass(frozen=True, slots=True)
class Count:
    of: Ref
    at_least: int | str | None
    at_most: int | str | None


@dataclass(frozen=True, slots=True)
class DailyMme:
    """Total morphine milligram equivalents per day of a criterion's matches (known doses only)."""

    of: Ref
    at_least: int | float | str


@dataclass(frozen=True, slots=True)
class Overlaps:
    first: Ref
    second: Ref
    within: str | None
    path: YamlPath


WhenExpr = Ref | All | AnyOf | Not | Count | Overlaps | DailyMme


@dataclass(frozen=True, slots=True)
class WhenProblem:
    path: YamlPath
    message: str
    at_key: bool = False  # point at the key (an unknown operator) rather than its value


def parse_when(data: Any, path: YamlPath) -> tuple[WhenExpr | None, list[WhenProblem]]:
    """Parse a ``when`` value; problems carry the YAML path of the offending node."""
    problems: list[WhenProblem] = []
    expr = _parse(data, path, problems)
    return (expr if not problems else None), problems


def _parse(data: Any, path: YamlPath, problems: list[WhenProblem]) -> WhenExpr | None:
    if isinstance(data, str):
        return Ref(data, path)
    if isinstance(data, list):
        problems.append(WhenProblem(path, "a list here is ambiguous; write {all: [...]} or {any: [...]}"))
        return None
    if not isinstance(data, dict) or len(data) == 0:
        problems.append(
            WhenProblem(path, f"expected a criterion name or one of all/any/not/count/overlaps, got {data!r}")
        )
        return None
    keys = set(data)
    if keys <= {"overlaps", "within"} and "overlaps" in keys:
        return _overlaps(data, path, problems)
    if len(keys) != 1:
        problems.append(
            WhenProblem(
                path,
                f"one operator per node, found {', '.join(sorted(keys))}; nest them with all/any",
            )
        )
        return None
    (op,) = keys
    value = data[op]
    sub = (*path, op)
    if op in ("all", "any"):
        if not isinstance(value, list) or not value:
            problems.append(WhenProblem(sub, f"'{op}' needs a non-empty list"))
            return None
        items = [_parse(v, (*sub, i), problems) for i, v in enumerate(value)]
        if any(i is None for i in items):
            return None
        parsed = tuple(i for i in items if i is not None)
        return All(parsed) if op == "all" else AnyOf(parsed)
    if op == "not":
        item = _parse(value, sub, problems)
        return Not(item) if item is not None else None
    if op == "count":
        return _count(value, sub, problems)
    if op == "daily_mme":
        return _daily_mme(value, sub, problems)
    guess = did_you_mean(op, ["all", "any", "not", "count", "overlaps", "daily_mme"])
    hint = f" (did you mean {guess!r}?)" if guess else ""
    problems.append(WhenProblem(sub, f"unknown operator {op!r}{hint}", at_key=True))
    return None


def _count(value: Any, path: YamlPath, problems: list[WhenProblem]) -> Count | None:
    if not isinstance(value, dict):
        problems.append(WhenProblem(path, "'count' needs {of: criterion, at_least: n}"))
        return None
    unknown = set(value) - {"of", "at_least", "at_most"}
    if unknown:
        problems.append(
            WhenProblem((*path, sorted(unknown)[0]), f"unknown key in count: {sorted(unknown)[0]!r}", at_key=True)
        )
        return None
    of = value.get("of")
    if not isinstance(of, str):
        problems.append(WhenProblem(path, "'count' needs 'of': the name of a criterion"))
        return None
    at_least, at_most = value.get("at_least"), value.get("at_most")
    if at_least is None and at_most is None:
        problems.append(WhenProblem(path, "'count' needs 'at_least' and/or 'at_most'"))
        return None
    for key, bound in (("at_least", at_least), ("at_most", at_most)):
        if bound is None:
            continue
        ok = (isinstance(bound, int) and not isinstance(bound, bool) and bound >= 0) or (
            isinstance(bound, str) and bound.startswith("$")
        )
        if not ok:
            problems.append(WhenProblem((*path, key), f"'{key}' must be a whole number or a $param, got {bound!r}"))
            return None
    return Count(Ref(of, (*path, "of")), at_least, at_most)


def _daily_mme(value: Any, path: YamlPath, problems: list[WhenProblem]) -> DailyMme | None:
    if not isinstance(value, dict) or set(value) != {"of", "at_least"} or not isinstance(value.get("of"), str):
        problems.append(WhenProblem(path, "'daily_mme' needs exactly {of: criterion, at_least: number or $param}"))
        return None
    bound = value["at_least"]
    ok = (isinstance(bound, int | float) and not isinstance(bound, bool) and bound >= 0) or (
        isinstance(bound, str) and bound.startswith("$")
    )
    if not ok:
        problems.append(WhenProblem((*path, "at_least"), f"'at_least' must be a number or a $param, got {bound!r}"))
        return None
    return DailyMme(Ref(value["of"], (*path, "of")), bound)


def _overlaps(data: dict[str, Any], path: YamlPath, problems: list[WhenProblem]) -> Overlaps | None:
    pair = data["overlaps"]
    sub = (*path, "overlaps")
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
        problems.append(WhenProblem(sub, "'overlaps' needs exactly two criterion names: [a, b]"))
        return None
    within = data.get("within")
    if within is not None and not isinstance(within, str):
        problems.append(WhenProblem((*path, "within"), "'within' must be a duration such as P30D"))
        return None
    return Overlaps(Ref(pair[0], (*sub, 0)), Ref(pair[1], (*sub, 1)), within, path)


def references(expr: WhenExpr) -> Iterator[Ref]:
    """Every criterion reference in an expression, in source order."""
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, All | AnyOf):
        for item in expr.items:
            yield from references(item)
    elif isinstance(expr, Not):
        yield from references(expr.item)
    elif isinstance(expr, Count | DailyMme):
        yield expr.of
    elif isinstance(expr, Overlaps):
        yield expr.first
        yield expr.second


def positive_references(expr: WhenExpr) -> Iterator[Ref]:
    """References that must *hold* for the expression to hold (not under a ``not``)."""
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, All | AnyOf):
        for item in expr.items:
            yield from positive_references(item)
    elif isinstance(expr, Count | DailyMme):
        yield expr.of
    elif isinstance(expr, Overlaps):
        yield expr.first
        yield expr.second


def params_used(expr: WhenExpr) -> Iterator[tuple[str, YamlPath]]:
    if isinstance(expr, All | AnyOf):
        for item in expr.items:
            yield from params_used(item)
    elif isinstance(expr, Not):
        yield from params_used(expr.item)
    elif isinstance(expr, Count):
        for bound in (expr.at_least, expr.at_most):
            if isinstance(bound, str):
                yield bound, expr.of.path[:-1]
    elif isinstance(expr, DailyMme) and isinstance(expr.at_least, str):
        yield expr.at_least, expr.of.path[:-1]
    elif isinstance(expr, Overlaps) and expr.within and expr.within.startswith("$"):
        yield expr.within, (*expr.path, "within")
