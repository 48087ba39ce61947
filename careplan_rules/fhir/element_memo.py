"""Validated elements remembered across resources, so fhir.resources checks each one once.

fhir.resources builds a pydantic model for every element of a resource, and most of its cost
is per element (a MedicationRequest is some twenty of them: codings, dosage, timing,
quantities, references). Yet the elements of a population repeat: the same
``medicationCodeableConcept`` for every patient on sertraline 50 mg, the same dosage text and
timing, the same category, the same ``subject`` in every resource of a patient. Pydantic does
not validate again a value that already is an instance of the field's model (its default
``revalidate_instances="never"``), and an element's validity depends only on its JSON and the
field it fills (class and key). So after a resource validates, its top-level elements are
kept, as the model instances fhir.resources built, by (model class, key, JSON text); the next
resource with an identical element gets the instance in place of the dict, and fhir.resources
validates the rest of it and every resource-level rule (choice types, required elements) as
before. A resource that fails is validated again as written, so its errors are exactly the
library's.

The memo is bounded (it starts afresh when full), needs no lock (dict operations are atomic;
the instances are never modified, only read by pydantic), and skips what is never worth it:
primitives, ``_element`` extension siblings and contained resources.

Whole resources recur too, within one patient's calls: a chart's patient-view, then an
order-select for every selection change and an order-sign, each with the same record in its
prefetch. The validity of a resource is as much a function of its JSON text and its class, so
the resources that validated are remembered by (class, JSON text), also bounded; one that
recurs costs an encoding (about 15 µs) instead of a validation (about 150 µs). A resource
that differs in anything (its id, a date, a value: another patient) misses and is validated.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel

MEMO_SIZE = 4096
_SKIPPED = frozenset({"contained", "resourceType", "text"})  # narrative is unique per resource

_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode

Slot = tuple[type[BaseModel], str, str]


@functools.lru_cache(maxsize=1024)
def _attributes(cls: type[BaseModel]) -> dict[str, str]:
    """JSON key → attribute name of a model's fields (``class`` → ``class_fhir``…)."""
    return {(field.alias or name): name for name, field in cls.model_fields.items()}


class ElementMemo:
    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._known: dict[Slot, Any] = {}

    def substitute(self, cls: type[BaseModel], resource: dict[str, Any]) -> tuple[dict[str, Any], list[Slot]]:
        """``resource`` with remembered elements as instances, and the slots still unknown."""
        data = resource
        unknown: list[Slot] = []
        for key, value in resource.items():
            kind = type(value)
            if (kind is not dict and kind is not list) or not value or key in _SKIPPED:
                continue
            if type(key) is not str or key.startswith("_"):
                continue  # extension siblings, and keys no JSON parser makes: left to the library
            if kind is list and type(value[0]) is not dict:
                continue  # a list of primitives: cheap to validate
            try:
                slot = (cls, key, _encode(value))
            except (TypeError, ValueError, RecursionError):  # not JSON (an API caller's datetime…): the library says so
                continue
            found = self._known.get(slot)
            if found is None:
                unknown.append(slot)
                continue
            if data is resource:
                data = dict(resource)
            data[key] = found
        return data, unknown

    def remember(self, model: BaseModel, unknown: list[Slot]) -> None:
        """Keep the instances of ``unknown`` elements that ``model`` (valid) was built with."""
        if not unknown:
            return
        names = _attributes(type(model))
        if len(self._known) + len(unknown) > self.size:
            self._known.clear()
        for slot in unknown:
            name = names.get(slot[1])
            if name is None:
                continue
            value = getattr(model, name, None)
            if isinstance(value, BaseModel) or (
                isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value)
            ):
                self._known[slot] = value


class ResourceMemo:
    """The (class, JSON text) of resources that validated."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._valid: set[tuple[type[BaseModel], str]] = set()

    def __contains__(self, key: tuple[type[BaseModel], str]) -> bool:
        return key in self._valid

    def add(self, key: tuple[type[BaseModel], str]) -> None:
        if len(self._valid) >= self.size:
            self._valid.clear()
        self._valid.add(key)


# shared by every validation of the process (caches of a pure function)
ELEMENTS = ElementMemo()
RESOURCES = ResourceMemo()


def valid_by_memo(cls: type[BaseModel], resource: dict[str, Any]) -> bool:
    """True when ``resource`` is known valid or validates with remembered elements (and
    remember it and its new elements).

    False means "not known valid": validate it as written to get the library's errors.
    """
    try:
        whole: tuple[type[BaseModel], str] | None = (cls, _encode(resource))
    except (TypeError, ValueError, RecursionError):  # not JSON (an API caller's datetime…): the library says so
        whole = None
    if whole is not None and whole in RESOURCES:
        return True
    data, unknown = ELEMENTS.substitute(cls, resource)
    try:
        model = cls.model_validate(data)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):  # ValidationError is a ValueError
        return False
    ELEMENTS.remember(model, unknown)
    if whole is not None:
        RESOURCES.add(whole)
    return True
