"""What fhir.resources' models know but do not enforce, read once per class.

Every generated field carries ``json_schema_extra``: ``enum_values`` lists the codes of a
*required* binding (status, intent, gender…) and ``enum_reference_types`` the resource types a
Reference may point to. fhir.resources leaves both unchecked on purpose (its README, "ENUM
Validator"; issue #23), so these checks are generic over every resource type rather than
hand-written per resource. Reading a class's fields costs milliseconds, so the tables are cached
and the walker then does plain dict lookups (≈ 30 µs per Synthea resource).
"""

from __future__ import annotations

import decimal
import functools
import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# package of each release's models; R4 data is read with the R4B models (research §1.5:
# no element differences in the resources the rules read)
PACKAGES = {
    "R4": "fhir.resources.R4B",
    "R4B": "fhir.resources.R4B",
    "R5": "fhir.resources",
    "STU3": "fhir.resources.STU3",
}
# abstract bases exist as classes but are not valid resourceTypes in data
_ABSTRACT = {"Resource", "DomainResource", "CanonicalResource", "MetadataResource"}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What the walker needs to know about one JSON key of a model."""

    child: type[BaseModel] | None  # complex type to descend into (None for primitives)
    kind: str  # "Reference", "CodeableReference", "Coding" or "Period" (what the checks collect), else ""
    is_list: bool
    codes: frozenset[str] | None  # required binding
    targets: frozenset[str] | None  # allowed reference targets (None: any)
    holds_resource: bool  # a whole resource: contained, Bundle.entry.resource, Parameters…resource
    json_type: str = ""  # "boolean", "integer" or "decimal": FHIR JSON writes these unquoted


def _getter(release: str) -> Callable[[str], type[BaseModel]]:
    module = importlib.import_module(PACKAGES[release])
    getter: Callable[[str], type[BaseModel]] = module.get_fhir_model_class
    return getter


@functools.lru_cache(maxsize=2048)
def resource_class(release: str, resource_type: str) -> type[BaseModel] | None:
    """The model of a resource type in a release; None when the release does not define it.

    Data types (``Coding``) and abstract bases (``DomainResource``) are not resources and give
    None, so ``{"resourceType": "Coding"}`` is reported rather than validated as a Coding.
    """
    if not resource_type or resource_type in _ABSTRACT or not resource_type.isidentifier():
        return None
    try:
        cls = _getter(release)(resource_type)
    except (ValueError, AttributeError, ImportError, KeyError):
        return None
    if not any(base.__name__ == "Resource" for base in cls.__mro__):
        return None
    return cls


@functools.lru_cache(maxsize=8)
def known_names(release: str) -> tuple[str, ...]:
    """Names of the resources and data types a release defines (for "did you mean" hints).

    Read from the package's module files (one per resource or data type) so that no model is
    imported just to suggest a name.
    """
    module = importlib.import_module(PACKAGES[release])
    folder = Path(module.__file__ or "").parent
    stems = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    fhirtypes = importlib.import_module(PACKAGES[release] + ".fhirtypes")
    names = [n[:-4] for n in dir(fhirtypes) if n.endswith("Type") and n[:-4].lower() in stems]
    return tuple(sorted(set(names)))


_COLLECTED = frozenset({"Reference", "CodeableReference", "Coding", "Period"})


def _collected(child: type[BaseModel] | None) -> str:
    name = getattr(child, "__resource_type__", "") if child is not None else ""
    return name if name in _COLLECTED else ""


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Optional/Union/Annotated/List around a field type; say whether it is a list."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if args else Any
        elif origin is list:
            is_list = True
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, is_list


@functools.lru_cache(maxsize=4096)
def fields_of(model: type[BaseModel]) -> dict[str, FieldSpec]:
    """JSON key → :class:`FieldSpec` for a model class (cached)."""
    out: dict[str, FieldSpec] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue  # fhir_comments, primitive extensions (_status) and other bookkeeping
        annotation, is_list = _unwrap(info.annotation)
        child: type[BaseModel] | None = None
        holds_resource = False
        get_klass = getattr(annotation, "get_model_klass", None)
        if get_klass is not None:
            if annotation.__name__ == "ResourceType":
                holds_resource = True
            else:
                child = get_klass()
        json_type = ""
        if annotation is bool:
            json_type = "boolean"
        elif annotation is int:
            json_type = "integer"
        elif annotation is decimal.Decimal:
            json_type = "decimal"
        codes = extra.get("enum_values")
        targets = extra.get("enum_reference_types")
        out[info.alias or name] = FieldSpec(
            child=child,
            kind=_collected(child),
            is_list=is_list,
            codes=frozenset(str(c) for c in codes) if isinstance(codes, list) and codes else None,
            targets=(
                frozenset(str(t) for t in targets)
                if isinstance(targets, list) and targets and "Resource" not in targets
                else None
            ),
            holds_resource=holds_resource,
            json_type=json_type,
        )
    return out


@functools.lru_cache(maxsize=4096)
def walked_fields(model: type[BaseModel]) -> dict[str, FieldSpec]:
    """The fields a walk must visit: complex, coded, resource-holding or non-string primitives.

    Plain strings (ids, displays, systems…) are the most common keys and need nothing, so
    leaving them out makes the walker's first dict lookup also its last for them.
    """
    return {
        key: spec
        for key, spec in fields_of(model).items()
        if spec.child is not None or spec.codes is not None or spec.holds_resource or spec.json_type
    }
