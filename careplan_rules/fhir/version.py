"""Tell R4 from R5 data by its shape.

FHIR JSON does not say which release it is. The engine needs to know: R4 data validates only
against fhir.resources' ``R4B`` models and R5 data only against the default ones, and the two
releases store medications, statement statuses and care-plan activities differently. These
are the signals that differ in the resources the rules read (see research/cds-hooks.md §4.5).
A document that shows both is an error: mixing releases in one record is a bug upstream that
would otherwise make some resources silently unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from careplan_rules.fhir.raw import items
from careplan_rules.fhir.reader import Entry

VERSIONS = ("R4", "R4B", "R5")
MED_TYPES = {"MedicationStatement", "MedicationRequest", "MedicationDispense", "MedicationAdministration"}
R4_STATEMENT_STATUS = {"active", "completed", "intended", "stopped", "on-hold", "unknown", "not-taken"}
R5_ONLY_TYPES = {
    "RequestOrchestration",
    "ActorDefinition",
    "Requirements",
    "InventoryItem",
    "Transport",
    "FormularyItem",
    "GenomicStudy",
    "ImagingSelection",
    "Permission",
}
# the only types whose shape :func:`signals` reads
SIGNALLING_TYPES = frozenset({*MED_TYPES, "DetectedIssue", "Encounter", "CarePlan", "Procedure", *R5_ONLY_TYPES})
LEGACY_TYPES = {
    "MedicationOrder": "DSTU2 (replaced by MedicationRequest)",
    "ProcedureRequest": "STU3 (replaced by ServiceRequest)",
    "ReferralRequest": "STU3 (replaced by ServiceRequest)",
    "DiagnosticOrder": "DSTU2 (replaced by ServiceRequest)",
    "DeviceUseRequest": "DSTU2",
}


@dataclass(frozen=True, slots=True)
class VersionSignal:
    version: str
    where: str
    why: str


def signals(entry: Entry) -> Iterable[VersionSignal]:
    r: dict[str, Any] = entry.resource
    rt = entry.resource_type
    where = entry.path if entry.line is None else f"line {entry.line}"
    if rt in MED_TYPES:
        if "medicationCodeableConcept" in r or "medicationReference" in r:
            yield VersionSignal("R4", where, f"{rt}.medication[x]")
        if isinstance(r.get("medication"), dict):
            yield VersionSignal("R5", where, f"{rt}.medication (CodeableReference)")
    if rt == "MedicationStatement":
        status = r.get("status")
        if not isinstance(status, str):
            status = None  # a malformed status signals nothing (validation reports it)
        if status in ("recorded", "draft"):
            yield VersionSignal("R5", where, f"MedicationStatement.status {status!r}")
        elif status in R4_STATEMENT_STATUS:
            yield VersionSignal("R4", where, f"MedicationStatement.status {status!r}")
        if "adherence" in r:
            yield VersionSignal("R5", where, "MedicationStatement.adherence")
    if rt == "MedicationRequest" and r.get("status") == "ended":
        yield VersionSignal("R5", where, "MedicationRequest.status 'ended'")
    if rt == "MedicationAdministration" and any(k.startswith("occurence") for k in r):
        yield VersionSignal("R5", where, "MedicationAdministration.occurence[x]")
    if rt == "DetectedIssue":
        if "patient" in r:
            yield VersionSignal("R4", where, "DetectedIssue.patient")
        if "subject" in r:
            yield VersionSignal("R5", where, "DetectedIssue.subject")
    if rt == "Encounter" and "class" in r:
        yield VersionSignal("R5" if isinstance(r["class"], list) else "R4", where, "Encounter.class")
    if rt == "CarePlan":
        for act in items(r.get("activity")):
            if isinstance(act, dict):
                if "detail" in act or "reference" in act:
                    yield VersionSignal("R4", where, "CarePlan.activity.detail/reference")
                if "plannedActivityReference" in act or "performedActivity" in act:
                    yield VersionSignal("R5", where, "CarePlan.activity.plannedActivityReference")
    if rt == "Procedure" and any(k.startswith("occurrence") for k in r):
        yield VersionSignal("R5", where, "Procedure.occurrence[x]")
    if rt == "Procedure" and any(k.startswith("performed") for k in r):
        yield VersionSignal("R4", where, "Procedure.performed[x]")
    if rt in R5_ONLY_TYPES:
        yield VersionSignal("R5", where, f"resource type {rt}")


@dataclass(frozen=True, slots=True)
class Detection:
    version: str  # R4 or R5 (R4 data is read with the R4B models)
    reason: str
    conflict: tuple[VersionSignal, VersionSignal] | None = None


def detect_version(entries: Iterable[Entry]) -> Detection:
    first: dict[str, VersionSignal] = {}
    for entry in entries:
        if entry.resource_type not in SIGNALLING_TYPES:
            continue  # most resources (Observations, Conditions…) look the same in R4 and R5
        for sig in signals(entry):
            first.setdefault(sig.version, sig)
        if len(first) == 2:
            break
    if "R4" in first and "R5" in first:
        return Detection("R4", "mixed", (first["R4"], first["R5"]))
    if "R5" in first:
        s = first["R5"]
        return Detection("R5", f"R5 shape: {s.why} at {s.where}")
    if "R4" in first:
        s = first["R4"]
        return Detection("R4", f"R4 shape: {s.why} at {s.where}")
    return Detection("R4", "no release-specific element; read as R4 (the common EHR release)")


def normalise_version(text: str) -> str:
    """Map a user's ``--fhir-version`` to R4 / R4B / R5 / auto."""
    t = text.strip().upper()
    aliases = {
        "4": "R4",
        "4.0": "R4",
        "4.0.1": "R4",
        "4.3": "R4B",
        "4.3.0": "R4B",
        "5": "R5",
        "5.0": "R5",
        "5.0.0": "R5",
    }
    t = aliases.get(t, t)
    if t in ("AUTO", *VERSIONS):
        return t.lower() if t == "AUTO" else t
    raise ValueError(f"unknown FHIR version {text!r}; use auto, R4, R4B or R5")
