"""Check 1, structure: fhir.resources' validation of one resource, one diagnostic per problem.

R4 data is validated with the ``R4B`` models and R5 data with the default ones
(research/fhir-perf-scale.md §1.5). When a resource fails, the other releases are tried before
anything is reported: data of the wrong release (an R5 MedicationStatement read as R4, a
Synthea R4 bundle forced to R5, an STU3 ``MedicationStatement.taken``) would otherwise come out
as a wall of "unknown element" messages, while the user needs one sentence: which release the
data looks like and how to rerun. Such a resource yields a :class:`ReleaseHint` instead, which
the caller summarises once per input (CPR-V003/V004).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from careplan_rules.diagnostics import Diagnostic, SourceLocation, suggestion_hint
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.validation import fhir_path
from careplan_rules.fhir.version import LEGACY_TYPES, signals
from careplan_rules.validate.codes import diag
from careplan_rules.validate.metadata import known_names, resource_class

MAX_PROBLEMS = 10  # per resource; the rest are counted, not listed
# DSTU2 is not shipped by fhir.resources 8; these are the DSTU2-only elements of the resources
# the rules read, so that such data gets a sentence naming DSTU2 instead of "unknown element"
DSTU2_ELEMENTS = {
    ("MedicationStatement", "wasNotTaken"): "MedicationStatement.wasNotTaken",
    ("MedicationStatement", "reasonNotTaken"): "MedicationStatement.reasonNotTaken",
    ("MedicationStatement", "patient"): "MedicationStatement.patient",
    ("MedicationDispense", "patient"): "MedicationDispense.patient",
    ("MedicationAdministration", "patient"): "MedicationAdministration.patient",
    ("Condition", "patient"): "Condition.patient",
    ("Observation", "patient"): "Observation.patient",
}
_PATTERNS = {
    r"^[A-Za-z0-9\-.]+$": "an id may hold only letters, digits, '-' and '.' (at most 64)",
    r"^[^\s]+(\s[^\s]+)*$": "a code may not be empty or start, end or repeat with whitespace",
}
_NO_ZONE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_CHOICE_MANY = re.compile(r"expected from this list \[(?P<names>[^\]]*)\], but got multiple")
_CHOICE_NONE = re.compile(r"Expect any of field value from this list \[(?P<names>[^\]]*)\]")


@dataclass(frozen=True, slots=True)
class ReleaseHint:
    """The resource is not valid in the release asked for, but is in another one."""

    release: str  # R4, R5, STU3 or DSTU2
    reason: str  # what shows it, e.g. "MedicationStatement.medication (CodeableReference)"


@dataclass(frozen=True, slots=True)
class StructureResult:
    diagnostics: tuple[Diagnostic, ...]
    release: str  # release whose models the other checks should use; "" when none applies
    hint: ReleaseHint | None = None


@dataclass(frozen=True, slots=True)
class _Problem:
    path: str
    kind: str
    message: str


def other_release(release: str) -> str:
    return "R5" if release in ("R4", "R4B") else "R4"


def label(release: str) -> str:
    return "R4" if release == "R4B" else release


def _names(text: str) -> list[str]:
    return [n.strip().strip("'\"") for n in text.split(",") if n.strip()]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: Any, release: str, resource_type: str) -> str:
    kind = str(err.get("type", ""))
    value = err.get("input")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ").strip()
    if kind == "extra_forbidden":
        return f"unknown element (FHIR {label(release)} does not define it here)"
    if kind in ("missing", "model_field_validation.missing"):
        return "required element is missing"
    if kind == "json_invalid" and isinstance(value, str):
        return f"expected a JSON object, got the string {_shown(value)}"
    if kind == "list_type":
        return f"expected a JSON array, got {type(value).__name__ if value is not None else 'null'}"
    if kind in ("model_type", "dict_type") or "valid dictionary" in msg:
        return f"expected a JSON object, got {_shown(value)}"
    many = _CHOICE_MANY.search(msg)
    if many:
        names = _names(many["names"])
        present = [n for n in names if isinstance(value, dict) and n in value]
        return f"only one of {', '.join(names)} may be given, found {' and '.join(present) or 'several'}"
    none = _CHOICE_NONE.search(msg)
    if none:
        return f"one of {', '.join(_names(none['names']))} is required"
    if isinstance(value, str) and "does not match spec regex" in msg and _NO_ZONE.match(value):
        # the most common defect of real feeds (fhir.resources #174): correct FHIR needs the zone
        return f"a dateTime with a time must have a time zone (Z or +hh:mm) (got {_shown(value)})"
    if kind == "string_pattern_mismatch":
        friendly = _PATTERNS.get(str((err.get("ctx") or {}).get("pattern", "")))
        if friendly:
            return f"{friendly} (got {_shown(value)})"
    if isinstance(value, dict | list) or value is None:
        return msg
    return f"{msg} (got {_shown(value)})"


def model_problems(model: type[BaseModel], resource: dict[str, Any], path: str, release: str) -> list[_Problem]:
    """Validate with one model; an empty list means valid."""
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        rt = str(resource.get("resourceType", ""))
        return [
            _Problem(fhir_path(path, err.get("loc", ())), str(err.get("type", "")), _describe(err, release, rt))
            for err in exc.errors(include_url=False)
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # fhir_core raises plain errors for some shapes (e.g. an unknown resourceType nested
        # in Parameters); one problem at the resource is better than none
        return [_Problem(path, "error", f"cannot be read as FHIR {label(release)}: {type(exc).__name__}: {exc}")]
    return []


def _missing_required(model: type[BaseModel], resource: dict[str, Any], path: str, seen: set[str]) -> list[_Problem]:
    """Required primitives (``status``) absent from the resource.

    fhir.resources checks these in an after-validator, which pydantic skips once any field has
    failed, so a typo elsewhere would hide a missing status until the typo is fixed.
    """
    out = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        key = info.alias or name
        where = f"{path}.{key}"
        if extra.get("element_required") and key not in resource and f"_{key}" not in resource and where not in seen:
            out.append(_Problem(where, "missing", "required element is missing"))
    return out


def _relative(problem_path: str, path: str, resource_type: str) -> str:
    return resource_type + problem_path[len(path) :] if problem_path.startswith(path) else problem_path


def _reason(resource: dict[str, Any], path: str, hint_release: str, failed: list[_Problem], release: str) -> str:
    entry = Entry(resource, path)
    wanted = "R4" if hint_release in ("R4", "R4B") else hint_release
    for sig in signals(entry):
        if sig.version == wanted:
            return f"it has {sig.why}"
    if failed:
        first = failed[0]
        where = _relative(first.path, path, entry.resource_type)
        if first.kind == "extra_forbidden":
            return f"{where} is not an element of FHIR {label(release)}"
        return f"{where}: {first.message}"
    return f"it validates as FHIR {hint_release}"


def _unknown_contained(resource: dict[str, Any], release: str, path: str) -> list[tuple[int, str]]:
    out = []
    contained = resource.get("contained")
    if isinstance(contained, list):
        for i, item in enumerate(contained):
            rt = item.get("resourceType") if isinstance(item, dict) else None
            if isinstance(rt, str) and resource_class(release, rt) is None:
                out.append((i, rt))
    return out


def _type_message(rt: str, release: str) -> str:
    hint = suggestion_hint(rt, known_names(release))
    text = f"resource type {rt!r} is not defined in FHIR {label(release)}"
    return text + (f" ({hint})" if hint else "")


def check_structure(
    resource: dict[str, Any], release: str, path: str, location: SourceLocation, *, try_others: bool = True
) -> StructureResult:
    """Validate one resource with the models of ``release``.

    Args:
        resource: the resource as parsed JSON (``resourceType`` is a string).
        release: ``R4``/``R4B`` or ``R5``.
        path: FHIR path of the resource (``Bundle.entry[3].resource``), prefixed to every path.
        location: file (and NDJSON line) for the diagnostics.
        try_others: when the resource fails, try the other releases and return a hint instead
            of the problems if one of them accepts it.

    Returns:
        Diagnostics (CPR-V001/V002) for the problems in ``release``, or a release hint.
    """
    rt = str(resource.get("resourceType", ""))
    model = resource_class(release, rt)
    if model is None:
        return _unknown_type(resource, rt, release, path, location, try_others)
    out: list[Diagnostic] = []
    bad_contained = _unknown_contained(resource, release, path)
    checked = resource
    if bad_contained:
        # fhir_core raises KeyError on an unknown contained type and reports nothing else;
        # report the type and validate the rest without it
        skip = {i for i, _ in bad_contained}
        checked = dict(resource)
        checked["contained"] = [c for i, c in enumerate(resource["contained"]) if i not in skip]
        for i, crt in bad_contained:
            where = f"{path}.contained[{i}]"
            out.append(diag("CPR-V002", f"{where}: {_type_message(crt, release)}", location, where))
    problems = model_problems(model, checked, path, release)
    if not problems:
        return StructureResult(tuple(out), release)
    problems += _missing_required(model, checked, path, {p.path for p in problems})
    if try_others and not bad_contained:
        hint = _try_others(resource, rt, release, path, problems)
        if hint is not None:
            use = hint.release if hint.release in ("R4", "R5") else ""
            return StructureResult((), use, hint)
    out.extend(_render(problems, path, location))
    return StructureResult(tuple(out), release)


def _render(problems: Iterable[_Problem], path: str, location: SourceLocation) -> list[Diagnostic]:
    listed = list(problems)
    out = [diag("CPR-V001", f"{p.path}: {p.message}", location, p.path) for p in listed[:MAX_PROBLEMS]]
    if len(listed) > MAX_PROBLEMS:
        more = len(listed) - MAX_PROBLEMS
        out.append(diag("CPR-V001", f"{path}: {more} more problem(s) in this resource", location, path))
    return out


def _try_others(
    resource: dict[str, Any], rt: str, release: str, path: str, problems: list[_Problem]
) -> ReleaseHint | None:
    for alt in (other_release(release), "STU3"):
        alt_model = resource_class(alt, rt)
        if alt_model is not None and not model_problems(alt_model, resource, path, alt):
            return ReleaseHint(alt, _reason(resource, path, alt, problems, release))
    for p in problems:
        if p.kind == "extra_forbidden":
            element = p.path[len(path) + 1 :] if p.path.startswith(path + ".") else ""
            legacy = DSTU2_ELEMENTS.get((rt, element))
            if legacy:
                return ReleaseHint("DSTU2", f"{legacy} is a DSTU2 element")
    return None


def _unknown_type(
    resource: dict[str, Any], rt: str, release: str, path: str, location: SourceLocation, try_others: bool
) -> StructureResult:
    if rt in LEGACY_TYPES:
        old, _, why = LEGACY_TYPES[rt].partition(" ")  # "DSTU2 (replaced by MedicationRequest)"
        return StructureResult((), "", ReleaseHint(old, f"{rt} is a {old} resource{' ' + why if why else ''}"))
    alt = other_release(release)
    alt_model = resource_class(alt, rt)
    if try_others and alt_model is not None and not model_problems(alt_model, resource, path, alt):
        return StructureResult((), alt, ReleaseHint(alt, f"resource type {rt} exists in FHIR {alt} only"))
    stu3 = resource_class("STU3", rt)
    if try_others and alt_model is None and stu3 is not None:
        return StructureResult((), "", ReleaseHint("STU3", f"resource type {rt} exists in FHIR STU3 only"))
    message = _type_message(rt, release)
    if alt_model is not None:
        message = f"resource type {rt!r} is defined in FHIR {alt} but not in {label(release)}"
    return StructureResult((diag("CPR-V002", f"{path}: {message}", location, path),), "")
