"""Expand the compact resource shorthands of rule tests into FHIR JSON.

Driven by the FHIR definitions that fhir.resources ships, not by hand-written per-resource
code (the AHRQ CQL Testing Framework's early per-resource handlers are why its users could
not test ``dosage`` or a referenced ``Medication``). For any element of any resource:

* a choice element is named without its type suffix and the type is chosen from the value:
  ``effective: "2025-02-10 - 2025-02-28"`` → ``effectivePeriod``, ``effective: "2025-02-20"``
  → ``effectiveDateTime``, ``medication: "RXNORM#36437 sertraline"`` →
  ``medicationCodeableConcept`` (R4) — in R5, ``medication`` is a CodeableReference and gets
  ``{concept: …}``;
* ``"SYSTEM#code display"`` is a Coding / CodeableConcept (``SYSTEM`` is a pack alias such as
  ``RXNORM`` or a URI); ``"start - end"`` a Period; ``"5 mg"`` a Quantity; ``"Type/id"`` a
  Reference; a plain string where an Annotation belongs is its text;
* ``subject``/``patient``/``for`` default to the test's patient, ``id`` to a stable generated
  id, and a few statuses default to the common value (documented in docs/authoring.md).

Unknown elements are errors with a did-you-mean, reported at the YAML position.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from careplan_rules.diagnostics import did_you_mean
from careplan_rules.fhir.validation import model_class

UCUM = "http://unitsofmeasure.org"
_CODING = re.compile(r"^\s*(?P<system>[^#\s]+)#(?P<code>[^\s]+)(?:\s+(?P<display>.+?))?\s*$")
_STAMP = r"[0-9]{4}[0-9T:.+\-Z]*"
# "start - end", "start -" (still running) or "- end"; the separator dash has a space on its
# outer side so it is never confused with the dashes inside a date
_PERIOD = re.compile(rf"^\s*(?:(?P<start>{_STAMP})\s+-(?:\s+(?P<end>{_STAMP}))?|-\s+(?P<only_end>{_STAMP}))\s*$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_QUANTITY = re.compile(r"^\s*(?P<value>-?\d+(?:\.\d+)?)\s*(?P<unit>\S.*?)?\s*$")
_REFERENCE = re.compile(r"^(?:[A-Z][A-Za-z]+/[A-Za-z0-9\-.]+|#[A-Za-z0-9\-.]+|urn:uuid:[0-9a-fA-F\-]+)$")

_R4_STATUS_DEFAULTS: dict[str, dict[str, Any]] = {
    "MedicationStatement": {"status": "active"},
    "MedicationRequest": {"status": "active", "intent": "order"},
    "MedicationDispense": {"status": "completed"},
    "MedicationAdministration": {"status": "completed"},
    "Observation": {"status": "final"},
    "Procedure": {"status": "completed"},
    "Task": {"status": "completed", "intent": "order"},
    "CarePlan": {"status": "active", "intent": "plan"},
    "DetectedIssue": {"status": "final"},
}
STATUS_DEFAULTS: dict[str, dict[str, Any]] = {
    "R4": _R4_STATUS_DEFAULTS,
    # R5 renamed the statement statuses: "recorded" is the plain "this is what the patient takes"
    "R5": {**_R4_STATUS_DEFAULTS, "MedicationStatement": {"status": "recorded"}},
}
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


class ShorthandError(ValueError):
    """A problem in a test resource; ``path`` is the key path inside the resource."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class FieldKind:
    name: str  # JSON name
    kind: str  # CodeableReference | CodeableConcept | Coding | Reference | Period | Quantity | Annotation | ...
    many: bool
    model: type[BaseModel] | None  # nested complex type, for recursion
    choice: str | None  # the choice base name (effective for effectiveDateTime)


_KINDS = (
    "CodeableReference",
    "CodeableConcept",
    "Coding",
    "Reference",
    "Period",
    "Quantity",
    "Annotation",
    "Ratio",
    "Range",
    "Duration",
    "Age",
)


def _kind_of(annotation: Any) -> tuple[str, bool, str | None]:
    text = str(annotation)
    many = "List[" in text or "list[" in text
    for kind in _KINDS:
        if f"{kind}Type" in text:
            return kind, many, f"{kind}Type"
    m = re.search(r"abc\.(\w+)Type", text)
    if m:
        return "Model", many, m.group(1)
    for marker, kind in (
        ("DateTime()", "dateTime"),
        ("Instant()", "instant"),
        ("Date()", "date"),
        ("bool", "boolean"),
        ("Decimal", "decimal"),
        ("int", "integer"),
    ):
        if marker in text:
            return kind, many, None
    return "string", many, None


def _nested_class(owner: type[BaseModel], type_name: str, version: str) -> type[BaseModel] | None:
    cls = model_class(version, type_name)
    if cls is not None:
        return cls
    module = sys.modules.get(owner.__module__)
    found = getattr(module, type_name, None)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


@lru_cache(maxsize=1024)
def fields_of(cls: type[BaseModel], version: str) -> Mapping[str, FieldKind]:
    out: dict[str, FieldKind] = {}
    for _name, info in cls.model_fields.items():
        alias = info.alias or _name
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if alias.startswith("_") or alias == "fhir_comments" or extra.get("element_property") is not True:
            continue
        kind, many, type_name = _kind_of(info.annotation)
        nested = None
        if kind == "Model" and type_name:
            nested = _nested_class(cls, type_name, version)
        base = extra.get("one_of_many")
        out[alias] = FieldKind(alias, kind, many, nested, base if isinstance(base, str) else None)
    return out


class Expander:
    """Expands shorthands for one FHIR release with a pack's code-system aliases."""

    def __init__(self, version: str, aliases: Mapping[str, str]) -> None:
        self.version = "R5" if version == "R5" else "R4"
        self.aliases = {k.upper(): v for k, v in aliases.items()}

    # -- scalar shorthands -----------------------------------------------------------------

    def coding(self, text: str, path: tuple[str | int, ...]) -> dict[str, Any]:
        m = _CODING.match(text)
        if m is None:
            raise ShorthandError(
                f"{text!r} is not a coding; write 'SYSTEM#code display', e.g. 'RXNORM#36437 sertraline'", path
            )
        system = m["system"]
        resolved = self.aliases.get(system.upper())
        if resolved is None and not system.startswith(("http://", "https://", "urn:")):
            guess = did_you_mean(system.upper(), self.aliases)
            hint = f" (did you mean {guess!r}?)" if guess else f" (known: {', '.join(sorted(self.aliases))})"
            raise ShorthandError(f"unknown code system alias {system!r}{hint}", path)
        out: dict[str, Any] = {"system": resolved or system, "code": m["code"]}
        if m["display"]:
            out["display"] = m["display"]
        return out

    def concept(self, value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):
            if _CODING.match(value) and "#" in value:
                coding = self.coding(value, path)
                return {"coding": [coding], **({"text": coding["display"]} if "display" in coding else {})}
            return {"text": value}
        if isinstance(value, dict) and isinstance(value.get("coding"), list):
            return {
                **value,
                "coding": [
                    self.coding(c, (*path, "coding", i)) if isinstance(c, str) else c
                    for i, c in enumerate(value["coding"])
                ],
            }
        return value

    def scalar(self, kind: str, value: Any, path: tuple[str | int, ...]) -> Any:
        if kind == "CodeableConcept":
            return self.concept(value, path)
        if kind == "Coding":
            return self.coding(value, path) if isinstance(value, str) else value
        if kind == "CodeableReference":
            if isinstance(value, str):
                if _REFERENCE.match(value):
                    return {"reference": {"reference": value}}
                return {"concept": self.concept(value, path)}
            if isinstance(value, dict) and not ({"concept", "reference"} & set(value)):
                return {"concept": self.concept(value, path)}
            return value
        if kind == "Reference":
            return {"reference": value} if isinstance(value, str) else value
        if kind == "Period" and isinstance(value, str):
            m = _PERIOD.match(value)
            if m is None:
                if _DATE.match(value.strip()):
                    return {"start": value.strip()}
                raise ShorthandError(f"{value!r} is not a period; write 'start - end' (either side may be empty)", path)
            end = m["end"] or m["only_end"]
            return {k: v for k, v in (("start", m["start"]), ("end", end)) if v}
        if kind in ("Quantity", "Duration", "Age"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return {"value": value}
            if isinstance(value, str):
                m = _QUANTITY.match(value)
                if m is None:
                    raise ShorthandError(f"{value!r} is not a quantity; write e.g. '12 {{score}}' or '5 mg'", path)
                number = float(m["value"])
                out: dict[str, Any] = {"value": int(number) if number.is_integer() else number}
                if m["unit"]:
                    out.update({"unit": m["unit"], "system": UCUM, "code": m["unit"]})
                return out
        if kind == "Annotation" and isinstance(value, str):
            return {"text": value}
        return value

    # -- choice elements -------------------------------------------------------------------

    def choose(self, options: list[FieldKind], value: Any) -> FieldKind | None:
        by_kind = {f.kind: f for f in options}
        by_suffix = {f.name: f for f in options}

        def first(*names: str) -> FieldKind | None:
            for n in names:
                if n in by_kind:
                    return by_kind[n]
                for suffix, f in by_suffix.items():
                    if suffix.lower().endswith(n.lower()):
                        return f
            return None

        if isinstance(value, bool):
            return first("Boolean", "boolean")
        if isinstance(value, int | float):
            return first("Integer", "integer", "decimal", "Quantity")
        if isinstance(value, dict):
            keys = set(value)
            if "reference" in keys and len(keys - {"reference", "display", "type"}) == 0:
                return first("Reference", "CodeableReference")
            if keys & {"start", "end"}:
                return first("Period")
            if keys & {"coding", "text"}:
                return first("CodeableConcept", "CodeableReference")
            if keys & {"value", "unit"}:
                return first("Quantity")
            if keys & {"event", "repeat"}:
                return first("Timing")
            return None
        if isinstance(value, str):
            if "#" in value and _CODING.match(value) and not value.startswith("#"):
                return first("CodeableConcept", "CodeableReference", "Coding")
            if _PERIOD.match(value):
                return first("Period")
            if _DATE.match(value.strip()):
                return first("dateTime", "DateTime", "date", "Date", "instant", "Period")
            if _REFERENCE.match(value):
                return first("Reference", "CodeableReference")
            if _QUANTITY.match(value) and value.strip()[0].isdigit():
                return first("Quantity")
            return first("CodeableConcept", "CodeableReference", "string", "String", "markdown")
        return None

    # -- resources -------------------------------------------------------------------------

    def element(
        self, cls: type[BaseModel], data: Mapping[str, Any], path: tuple[str | int, ...], type_name: str
    ) -> dict[str, Any]:
        fields = fields_of(cls, self.version)
        choices: dict[str, list[FieldKind]] = {}
        for f in fields.values():
            if f.choice:
                choices.setdefault(f.choice, []).append(f)
        out: dict[str, Any] = {}
        for key, value in data.items():
            here = (*path, key)
            if key in ("resourceType", "id") or key.startswith("_"):
                out[key] = value
                continue
            field = fields.get(key)
            if field is None and key in choices:
                field = self.choose(choices[key], value)
                if field is None:
                    names = ", ".join(f.name for f in choices[key])
                    raise ShorthandError(
                        f"cannot tell which of {names} {value!r} is; write the full element name", here
                    )
            if field is None:
                guess = did_you_mean(key, [*fields, *choices])
                hint = f" (did you mean {guess!r}?)" if guess else ""
                raise ShorthandError(f"{type_name} has no element {key!r} in FHIR {self.version}{hint}", here)
            out[field.name] = self.value(field, value, here)
        return out

    def value(self, field: FieldKind, value: Any, path: tuple[str | int, ...]) -> Any:
        if field.many:
            items = value if isinstance(value, list) else [value]
            return [self.one(field, item, (*path, i)) for i, item in enumerate(items)]
        return self.one(field, value, path)

    def one(self, field: FieldKind, value: Any, path: tuple[str | int, ...]) -> Any:
        if field.kind == "Model" and field.model is not None and isinstance(value, dict):
            if field.name == "contained" or "resourceType" in value:
                return self.resource(value, path)
            return self.element(field.model, value, path, field.model.__name__)
        return self.scalar(field.kind, value, path)

    def resource(
        self,
        data: Mapping[str, Any],
        path: tuple[str | int, ...] = (),
        patient_ref: str | None = None,
        default_id: str | None = None,
    ) -> dict[str, Any]:
        rt = data.get("resourceType")
        if not isinstance(rt, str):
            raise ShorthandError("a test resource needs 'resourceType'", path)
        cls = model_class(self.version, rt)
        if cls is None:
            raise ShorthandError(f"unknown resource type {rt!r} in FHIR {self.version}", (*path, "resourceType"))
        out = self.element(cls, data, path, rt)
        if default_id and "id" not in out:
            out["id"] = default_id
        for key, default in STATUS_DEFAULTS[self.version].get(rt, {}).items():
            out.setdefault(key, default)
        if rt == "Condition" and "clinicalStatus" not in out and "abatementDateTime" not in out:
            out["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]}
        if patient_ref and rt != "Patient":
            fields = fields_of(cls, self.version)
            for name in ("subject", "patient", "for"):
                if name in fields and fields[name].kind == "Reference" and name not in out:
                    out[name] = {"reference": patient_ref}
                    break
        return out
