"""Turn pydantic validation errors into one-sentence, positioned diagnostics.

Authors must never see a raw schema dump (Semgrep users complained about exactly that:
``ordereddict([('anyOf', …)]) is not allowed``). Each pydantic error becomes one diagnostic
that names the key, quotes the value, and points at the line and column in the YAML file; an
unknown key gets a did-you-mean from the model's own field names; a union (``value`` may be
thresholds *or* a value set) fails with one message, not one per alternative.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from careplan_rules.diagnostics import Diagnostic, did_you_mean
from careplan_rules.loader.yaml_reader import YamlDocument
from careplan_rules.model.common import YamlPath

CODE_SCHEMA = "CPR-E002"
CODE_UNKNOWN_KEY = "CPR-E011"


def validation_diagnostics(
    exc: ValidationError, model: type[BaseModel], doc: YamlDocument, rule_id: str | None = None
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen_unions: set[YamlPath] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        data_path, union_at = _data_path(model, loc)
        if union_at is not None:
            if union_at in seen_unions:
                continue
            seen_unions.add(union_at)
            field = _field_info(model, union_at)
            expected = (field.description if field is not None else None) or "a valid value"
            out.append(
                Diagnostic(
                    code=CODE_SCHEMA,
                    message=f"invalid value for {_name(union_at)!r}: expected {expected}",
                    location=doc.location(union_at),
                    rule_id=rule_id,
                    path=_dotted(union_at),
                )
            )
            continue
        out.append(_one(err, model, data_path, doc, rule_id))
    return out


def _one(err: Any, model: type[BaseModel], path: YamlPath, doc: YamlDocument, rule_id: str | None) -> Diagnostic:
    kind = err["type"]
    value = err.get("input")
    name = _name(path)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, path[:-1])
        guess = did_you_mean(str(path[-1]), allowed) if allowed else None
        where = f" in {_name(path[:-1])!r}" if path[:-1] else ""
        message = f"unknown key {path[-1]!r}{where}"
        hint = (
            f"did you mean {guess!r}?"
            if guess
            else (f"allowed keys: {', '.join(sorted(allowed))}" if allowed else None)
        )
        return Diagnostic(
            CODE_UNKNOWN_KEY,
            message,
            location=doc.location(path, key=True),
            rule_id=rule_id,
            hint=hint,
            path=_dotted(path),
        )
    if kind == "missing":
        where = f" in {_name(path[:-1])!r}" if path[:-1] else ""
        return Diagnostic(
            CODE_SCHEMA,
            f"missing required key {path[-1]!r}{where}",
            location=doc.location(path[:-1]),
            rule_id=rule_id,
            path=_dotted(path),
        )
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{name!r} must be one of {expected}; got {value!r}"
    elif kind == "string_type":
        raw = doc.raw_scalars.get(path)
        hint = ""
        if raw is not None and isinstance(value, bool | int | float):
            hint = f' (YAML reads {raw} as {_typename(value)} {value!r}; quote it: "{raw}")'
        message = f"{name!r} must be text, got {_typename(value)} {value!r}{hint}"
    elif kind in ("int_type", "int_parsing", "float_type", "float_parsing"):
        message = f"{name!r} must be a number, got {value!r}"
    elif kind in ("bool_type", "bool_parsing"):
        message = f"{name!r} must be true or false, got {value!r}"
    elif kind in ("list_type",):
        message = f"{name!r} must be a list, got {_typename(value)}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = f"{name!r} must be a mapping of keys to values, got {_typename(value)} {_short(value)}"
    elif kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        what = (
            "lower-case letters, digits and hyphens"
            if "a-z0-9-" in pattern
            else ("lower-case letters, digits and underscores" if "a-z0-9_" in pattern else f"the pattern {pattern}")
        )
        message = f"{name!r} must use {what}; got {value!r}"
    elif kind in ("string_too_short",):
        message = f"{name!r} must not be empty"
    elif kind == "value_error":
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        if path:
            message = f"{name}: {message}"
    else:
        message = f"{name!r}: {err.get('msg', 'invalid value')}"
    return Diagnostic(CODE_SCHEMA, message, location=doc.location(path), rule_id=rule_id, path=_dotted(path))


def _typename(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "the boolean",
        type(None): "nothing",
        int: "the number",
        float: "the number",
    }.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _name(path: YamlPath) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return "document"


def _dotted(path: YamlPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- walking the model alongside an error location -------------------------------------------


def _unwrap(annotation: Any) -> list[Any]:
    """Concrete alternatives of an annotation (Optional/Union/Annotated stripped)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(annotation):
            if arg is type(None):
                continue
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _model_alternatives(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in _unwrap(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for fname, info in model.model_fields.items():
        if key in (fname, info.alias):
            return info
    return None


def _field_info(model: type[BaseModel], path: YamlPath) -> Any:
    current: Any = model
    info = None
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            info = _field_by_key(current, part)
            if info is None:
                return None
            current = info.annotation
        else:
            current = _container_item(current)
    return info


def _container_item(annotation: Any) -> Any:
    for alt in _unwrap(annotation):
        origin = get_origin(alt)
        if origin in (list, tuple, set):
            return get_args(alt)[0]
        if origin is dict:
            return get_args(alt)[1]
    return None


def _data_path(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[YamlPath, YamlPath | None]:
    """Map a pydantic error location to a YAML path; report where a union failed, if any.

    pydantic inserts the name of the union member it tried ("NumberFilter") into locations;
    those tags are not keys of the document and are dropped here.
    """
    path: list[str | int] = []
    current: Any = model
    union_at: YamlPath | None = None
    for part in loc:
        alternatives = _unwrap(current) if current is not None else []
        if len(alternatives) > 1:
            if isinstance(part, str) and not any(
                _field_by_key(m, part) is not None for m in _model_alternatives(current)
            ):
                tagged = [a for a in alternatives if getattr(a, "__name__", None) == part]
                current = tagged[0] if tagged else current
                continue
            models = _model_alternatives(current)
            if len(models) == 1:
                current = models[0]
        elif len(alternatives) == 1:
            current = alternatives[0]
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            info = _field_by_key(current, part)
            if info is None:
                path.append(part)
                current = None
                continue
            path.append(info.alias or part)
            current = info.annotation
            if len(_unwrap(current)) > 1 and _model_alternatives(current):
                union_at = union_at or tuple(path)
            continue
        path.append(part)
        current = _container_item(current) if current is not None else None
    return tuple(path), union_at


def _allowed_keys(model: type[BaseModel], path: YamlPath) -> list[str]:
    current: Any = model
    for part in path:
        models = _model_alternatives(current) if current is not None else []
        if len(models) >= 1 and isinstance(part, str) and not _is_mapping(current):
            info = _field_by_key(models[0], part)
            if info is None:
                return []
            current = info.annotation
        else:
            current = _container_item(current)
    models = _model_alternatives(current) if current is not None else []
    if not models:
        return []
    keys: list[str] = []
    for m in models:
        keys.extend(info.alias or name for name, info in m.model_fields.items())
    return keys


def _is_mapping(annotation: Any) -> bool:
    return any(get_origin(a) is dict for a in _unwrap(annotation))
