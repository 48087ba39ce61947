"""One pass over a resource, guided by its model, collecting what the checks look at.

The bindings, integrity and readiness checks all need the same things from a resource: its
coded values with their required bindings, its references with their allowed targets, its
codings, periods and contained resources. Walking the JSON once with the model's field table
(:mod:`careplan_rules.validate.metadata`) and handing the checks a :class:`Digest` keeps the
extra checks to a fraction of fhir.resources' own cost (see benchmarks/bench_validate.py).

Values of the wrong JSON type are skipped here: structural validation reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel

from careplan_rules.validate.metadata import FieldSpec, resource_class, walked_fields

# Sites are NamedTuples rather than frozen dataclasses: a walk creates several per resource,
# and a tuple is built in a fraction of the time a frozen dataclass's __init__ takes.


class RefSite(NamedTuple):
    """A Reference found in a resource."""

    path: str  # FHIR path of the Reference element
    reference: dict[str, Any]
    targets: frozenset[str] | None  # allowed target types (None: any)
    field: str  # the element name holding it ("subject", "medicationReference"…)
    top_level: bool  # a direct element of a resource (or of a contained resource)
    contained_id: str | None  # id of the contained resource it sits in, if any


class CodeSite(NamedTuple):
    path: str
    value: str
    allowed: frozenset[str]


class TypeSite(NamedTuple):
    path: str
    value: Any
    json_type: str  # what FHIR JSON requires: boolean, integer, decimal


class ContainedSite(NamedTuple):
    path: str
    resource: dict[str, Any]


@dataclass(slots=True)
class Digest:
    """What one walk found."""

    bad_codes: list[CodeSite] = field(default_factory=list)
    bad_types: list[TypeSite] = field(default_factory=list)
    refs: list[RefSite] = field(default_factory=list)
    codings: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # with a code, without a system
    periods: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # with a start and an end
    contained: list[ContainedSite] = field(default_factory=list)


def _collect(kind: str, value: dict[str, Any]) -> bool:
    """Whether an element of a collected kind goes into the digest.

    Codings and Periods are only of interest when they may be wrong (a code without a system,
    a period with both ends); filtering here spares building a path for the many that are fine.
    """
    if kind == "Coding":
        return "code" in value and not value.get("system")
    if kind == "Period":
        return "start" in value and "end" in value
    return True


_WALKED: dict[type[BaseModel], dict[str, FieldSpec]] = {}  # plain dict: cheaper than the lru_cache call


class _Walker:
    __slots__ = ("digest", "release")

    def __init__(self, release: str) -> None:
        self.release = release
        self.digest = Digest()

    def resource(self, node: dict[str, Any], model: type[BaseModel], path: str, contained_id: str | None) -> None:
        self.node(node, walked_fields(model), path, True, contained_id)

    def node(
        self, node: dict[str, Any], specs: dict[str, FieldSpec], path: str, top: bool, contained_id: str | None
    ) -> None:
        # The hot loop of the extra checks. A child element is entered only when it is something
        # the checks collect (a Reference, Coding…) or holds a key worth visiting: the test is a
        # C-level set operation, which spares a Python call for most Codings and Periods.
        for key, value in node.items():
            spec = specs.get(key)
            if spec is None:
                continue
            child = spec.child
            if child is not None:
                inner = _WALKED.get(child)
                if inner is None:
                    inner = _WALKED[child] = walked_fields(child)
                kind = spec.kind
                if type(value) is dict:
                    if (kind and _collect(kind, value)) or not inner.keys().isdisjoint(value):
                        self.element(value, spec, inner, key, f"{path}.{key}", top, contained_id)
                elif type(value) is list:
                    for i, item in enumerate(value):
                        if type(item) is not dict:
                            continue
                        if (kind and _collect(kind, item)) or not inner.keys().isdisjoint(item):
                            self.element(item, spec, inner, key, f"{path}.{key}[{i}]", top, contained_id)
                continue
            codes = spec.codes
            if codes is not None:
                if type(value) is str:
                    if value not in codes:
                        self.digest.bad_codes.append(CodeSite(f"{path}.{key}", value, codes))
                elif type(value) is list:
                    for i, item in enumerate(value):
                        if type(item) is str and item not in codes:
                            self.digest.bad_codes.append(CodeSite(f"{path}.{key}[{i}]", item, codes))
                continue
            if spec.holds_resource:
                self.held(key, value, path, contained_id)
            elif spec.json_type:
                self.scalar(value, spec.json_type, f"{path}.{key}")

    def element(
        self,
        value: dict[str, Any],
        spec: FieldSpec,
        inner: dict[str, FieldSpec],
        key: str,
        path: str,
        top: bool,
        contained_id: str | None,
    ) -> None:
        kind = spec.kind
        if kind == "Reference":
            self.digest.refs.append(RefSite(path, value, spec.targets, key, top, contained_id))
        elif kind == "Coding":
            if _collect(kind, value):
                self.digest.codings.append((path, value))
        elif kind == "Period":
            if _collect(kind, value):
                self.digest.periods.append((path, value))
        elif kind == "CodeableReference":
            ref = value.get("reference")
            if type(ref) is dict:
                # the allowed targets sit on the CodeableReference element, not on its .reference
                self.digest.refs.append(RefSite(f"{path}.reference", ref, spec.targets, key, top, contained_id))
                value = {k: v for k, v in value.items() if k != "reference"}
        if not inner.keys().isdisjoint(value):
            self.node(value, inner, path, False, contained_id)

    def scalar(self, value: Any, json_type: str, path: str) -> None:
        # pydantic's lax mode turns "true" into True and "5" into 5; FHIR JSON does not allow it
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if item is None:
                continue
            if json_type == "boolean":
                ok = isinstance(item, bool)
            elif json_type == "integer":
                ok = isinstance(item, int) and not isinstance(item, bool)
            else:
                ok = isinstance(item, int | float) and not isinstance(item, bool)
            if not ok:
                where = f"{path}[{i}]" if isinstance(value, list) else path
                self.digest.bad_types.append(TypeSite(where, item, json_type))

    def held(self, key: str, value: Any, path: str, contained_id: str | None) -> None:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            rt = item.get("resourceType")
            model = resource_class(self.release, rt) if isinstance(rt, str) else None
            if model is None:
                continue  # structural validation reports the unknown type
            here = f"{path}.{key}[{i}]" if isinstance(value, list) else f"{path}.{key}"
            if key == "contained":
                self.digest.contained.append(ContainedSite(here, item))
                cid = item.get("id")
                self.resource(item, model, here, cid if isinstance(cid, str) else "")
            else:
                self.resource(item, model, here, contained_id)


def walk(resource: dict[str, Any], release: str, path: str) -> Digest:
    """Walk a resource (and what it contains) with the models of ``release``.

    Args:
        resource: the resource as parsed JSON.
        release: ``R4``/``R4B``, ``R5`` or ``STU3``.
        path: the FHIR path of the resource, prefixed to every path in the digest.

    Returns:
        The digest; empty when the release does not define the resource type.
    """
    walker = _Walker(release)
    rt = resource.get("resourceType")
    model = resource_class(release, rt) if isinstance(rt, str) else None
    if model is not None:
        walker.resource(resource, model, path, None)
    return walker.digest
