"""Structural validation of resources with fhir.resources (R4 data → ``R4B`` models, R5 → default).

fhir.resources costs 40–75× a JSON parse, so the evaluate path validates only what the rules
read (decision 5 of the architecture); the ``validate`` command does the rest. Errors name
the FHIR path (``Bundle.entry[3].resource.effectivePeriod.start``) and quote the value.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.fhir.element_memo import valid_by_memo
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.version import LEGACY_TYPES


@functools.lru_cache(maxsize=512)
def model_class(version: str, resource_type: str) -> type[BaseModel] | None:
    """The fhir.resources class for a resource type in a release (None if it has none)."""
    if version in ("R4", "R4B"):
        from fhir.resources.R4B import get_fhir_model_class as get_r4b
    else:
        from fhir.resources import get_fhir_model_class as get_r4b  # R5 is the default package
    try:
        cls = get_r4b(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    return cls


def fhir_path(prefix: str, loc: Iterable[Any]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "literal")):
            out += f".{part}"
    return out


def _describe(err: Any) -> str:
    kind = err.get("type", "")
    value = err.get("input")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown element (not defined for this resource in this FHIR release)"
    if kind in ("missing", "model_field_validation.missing"):
        return "required element is missing"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if isinstance(value, dict | list):
        return msg
    return f"{msg} (got {shown})"


def validate_entry(entry: Entry, version: str, source: str) -> list[Diagnostic]:
    """Validate one resource; return one diagnostic per problem (empty when valid)."""
    rt = entry.resource_type
    cls = model_class(version, rt)
    if cls is None:
        loc = SourceLocation(source, entry.line)
        legacy = LEGACY_TYPES.get(rt)
        release = "R4" if version in ("R4", "R4B") else "R5"
        why = f"it is a {legacy} resource" if legacy else "the release does not define it"
        return [
            Diagnostic(
                "CPR-F011",
                f"{entry.path}: resource type {rt!r} cannot be read as FHIR {release}: {why}",
                location=loc,
                path=entry.path,
            )
        ]
    if valid_by_memo(cls, entry.resource):
        return []
    try:  # as written: the library's own errors and paths
        cls.model_validate(entry.resource)
    except ValidationError as exc:
        loc = SourceLocation(source, entry.line)
        out = []
        for err in exc.errors(include_url=False)[:20]:
            path = fhir_path(entry.path, err.get("loc", ()))
            out.append(Diagnostic("CPR-F010", f"{path}: {_describe(err)}", location=loc, path=path))
        if len(exc.errors()) > 20:
            out.append(
                Diagnostic(
                    "CPR-F010",
                    f"{entry.path}: {len(exc.errors()) - 20} more problems in this resource",
                    location=loc,
                    path=entry.path,
                )
            )
        return out
    except (ValueError, TypeError) as exc:  # fhir_core raises plain errors for some shapes
        loc = SourceLocation(source, entry.line)
        return [Diagnostic("CPR-F010", f"{entry.path}: {exc}", location=loc, path=entry.path)]
    except KeyError as exc:  # fhir_core looks up a nested resource's resourceType without a check
        loc = SourceLocation(source, entry.line)
        message = f"{entry.path}: an element holds a resource of unknown type ({exc})"
        return [Diagnostic("CPR-F010", message, location=loc, path=entry.path)]
    except RecursionError:  # elements nested thousands deep (only an API caller's dict can be)
        loc = SourceLocation(source, entry.line)
        return [Diagnostic("CPR-F010", f"{entry.path}: nested too deeply", location=loc, path=entry.path)]
    return []
