"""Read one NDJSON line of a Bulk Data export and say where it goes.

A line is one of:

* ``resource``: a resource the rules read (or a Patient), with the patient it belongs to;
* ``shared``: a resource that belongs to nobody (Medication, Practitioner, Substance…) and is
  reached through references; it goes to the side index of shared resources;
* ``deferred``: a Provenance whose patient is only known through what it targets (a
  MedicationStatement, say), placed once the owners of those targets are known;
* ``skipped``: a type no loaded rule reads (Claim, Encounter…): its patient does not matter;
* ``blank``: an empty line;
* ``error``: malformed JSON, not a FHIR resource, or a resource whose patient cannot be told.

The patient is found with the same function the evaluation core uses to split an input
(:func:`careplan_rules.fhir.partition.patient_of`), so a screen groups exactly as ``evaluate``
would on the same resources. Both runners (local and Spark) classify with this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from careplan_rules.fhir.partition import SHARED_TYPES, patient_of
from careplan_rules.fhir.raw import items
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.references import ReferenceIndex
from careplan_rules.screen.rows import KIND_MALFORMED, KIND_NO_PATIENT, ErrorRow

RESOURCE = "resource"
SHARED = "shared"
DEFERRED = "deferred"
SKIPPED = "skipped"
BLANK = "blank"
ERROR = "error"

_BLANK = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_CONTROL = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True, slots=True)
class Classified:
    """Where one line goes (see the module docstring for the kinds)."""

    kind: str
    resource_type: str = ""
    key: str = ""  # the patient ("Patient/p1") of a resource
    ref: str = ""  # the resource's own "Type/id"
    targets: tuple[str, ...] = ()  # a deferred Provenance's targets, in order
    error: ErrorRow | None = None


def classify_line(raw: bytes, wanted: Collection[str], file: str, line: int) -> Classified:
    """Classify one NDJSON line.

    Args:
        raw: the line's bytes (with or without its newline).
        wanted: the resource types the loaded rules read (``engine.ruleset.read_types``).
        file: the file's display name, for errors.
        line: the 1-based line number, for errors.

    Returns:
        The line's :class:`Classified`; problems are returned as ``kind == "error"``, never raised.
    """
    text = raw.strip(_BLANK)
    if not text:
        return Classified(BLANK)
    try:
        data = json.loads(text.decode("utf-8-sig" if text.startswith(_BOM) else "utf-8"))
    except UnicodeDecodeError:
        return _error(KIND_MALFORMED, "CPR-F003", "line is not UTF-8 text", file, line)
    except json.JSONDecodeError as exc:
        return _error(KIND_MALFORMED, "CPR-F005", f"malformed JSON: {exc.msg} (column {exc.colno})", file, line)
    except RecursionError:
        return _error(KIND_MALFORMED, "CPR-F005", "malformed JSON: nested too deeply", file, line)
    if not isinstance(data, dict):
        return _error(
            KIND_MALFORMED, "CPR-F006", "each NDJSON line must be one FHIR resource (a JSON object)", file, line
        )
    rt = data.get("resourceType")
    if not isinstance(rt, str) or not rt:
        return _error(KIND_MALFORMED, "CPR-F006", "line is not a FHIR resource: it has no 'resourceType'", file, line)
    if rt == "Bundle":
        return _error(
            KIND_MALFORMED,
            "CPR-P001",
            "a Bundle in a Bulk Data export: screen reads one resource per line "
            "(evaluate Bundles with `careplan-rules evaluate`)",
            file,
            line,
        )
    entry = Entry(data, rt, None, line)
    index = ReferenceIndex((entry,))
    ref = index.ref_of(entry)
    if rt != "Patient" and rt not in wanted and rt not in SHARED_TYPES:
        return Classified(SKIPPED, rt)
    if _clean(ref) is None:
        return Classified(ERROR, rt, error=_bad_id(rt, file, line))
    if rt in SHARED_TYPES:
        return Classified(SHARED, rt, ref=ref)
    if rt == "Provenance":
        return _provenance(entry, index, ref, file, line)
    key = patient_of(entry, index)
    if key is None or _clean(key) is None or key.startswith("#"):
        return Classified(ERROR, rt, ref=ref, error=_no_patient(rt, ref, file, line))
    return Classified(RESOURCE, rt, key, ref)


def _provenance(entry: Entry, index: ReferenceIndex, ref: str, file: str, line: int) -> Classified:
    # the same order of preference as careplan_rules.fhir.partition: Provenance.patient (R5),
    # then the owner of each target in turn (a target that is a Patient owns itself)
    r = entry.resource
    direct = r.get("patient")
    if isinstance(direct, dict):
        key = index.ref_string(direct, container=r, from_entry=entry)
        if key and _clean(key) and not key.startswith("#"):
            return Classified(RESOURCE, "Provenance", key, ref)
    targets = []
    for target in items(r.get("target")):
        t = index.ref_string(target, container=r, from_entry=entry)
        if t and _clean(t):
            targets.append(t)
    if not targets:
        return Classified(ERROR, "Provenance", ref=ref, error=_no_patient("Provenance", ref, file, line))
    if targets[0].startswith("Patient/"):
        return Classified(RESOURCE, "Provenance", targets[0], ref)
    return Classified(DEFERRED, "Provenance", ref=ref, targets=tuple(targets))


def resolve_provenance(targets: Sequence[str], owner_of: Callable[[str], str | None]) -> str | None:
    """The patient of a deferred Provenance: the owner of its first target that has one.

    Args:
        targets: the Provenance's targets, in order.
        owner_of: the patient that owns a resource (``"MedicationStatement/k1"``), or None.
    """
    for t in targets:
        owner = owner_of(t)
        if owner is not None:
            return owner
        if t.startswith("Patient/"):
            return t
    return None


def _clean(text: str) -> str | None:
    # keys and refs travel in tab-separated records; a FHIR id never holds control characters
    return None if _CONTROL.search(text) else text


def _error(kind: str, code: str, message: str, file: str, line: int, ref: str | None = None) -> Classified:
    return Classified(ERROR, error=ErrorRow(kind, code, message, file, line, None, ref))


def _no_patient(rt: str, ref: str, file: str, line: int) -> ErrorRow:
    return ErrorRow(
        KIND_NO_PATIENT,
        "CPR-F020",
        f"cannot tell which patient this {rt} belongs to (no subject/patient reference to a Patient)",
        file,
        line,
        None,
        ref,
    )


def _bad_id(rt: str, file: str, line: int) -> ErrorRow:
    return ErrorRow(KIND_MALFORMED, "CPR-F006", f"the {rt}'s id holds control characters", file, line)
