"""Rule parameters: ``$name`` references resolved against defaults and site overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from careplan_rules.errors import EvaluationError
from careplan_rules.temporal import Duration, parse_duration


def _lookup(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in params:
            raise EvaluationError(f"param {value!r} has no value")
        return params[name]
    return value


def resolve_duration(value: Any, params: Mapping[str, Any]) -> Duration:
    resolved = _lookup(value, params)
    try:
        return parse_duration(resolved)
    except ValueError as exc:
        raise EvaluationError(f"param {value!r}: {exc}") from None


def resolve_number(value: Any, params: Mapping[str, Any]) -> float:
    resolved = _lookup(value, params)
    if isinstance(resolved, bool) or not isinstance(resolved, int | float):
        raise EvaluationError(f"{value!r} must be a number, got {resolved!r}")
    return float(resolved)
