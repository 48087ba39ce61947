"""Split an input per patient (the Patient compartment), so no two patients' data ever mix.

A resource belongs to the patient its ``subject`` / ``patient`` / ``for`` reference points to;
a Provenance to the patient of what it targets. Shared resources (Medication, Practitioner,
Organization…) belong to nobody and are reached only through references. A clinical resource
whose patient cannot be told is assigned to the only patient of the input when there is
exactly one, forms an anonymous record when the input names no patient at all, and is
otherwise an error: dropping it could drop a finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.fhir.raw import items
from careplan_rules.fhir.reader import Entry, FhirDocument
from careplan_rules.fhir.references import ReferenceIndex

PATIENT_FIELDS = ("subject", "patient", "for", "beneficiary")
SHARED_TYPES = {
    "Medication",
    "Substance",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Device",
    "HealthcareService",
    "Endpoint",
    "ValueSet",
    "CodeSystem",
    "OperationOutcome",
    "Group",
    "PlanDefinition",
    "ActivityDefinition",
    "Library",
    "RelatedPerson",
}


@dataclass(slots=True)
class PatientGroup:
    patient_ref: str
    patient_entry: Entry | None = None
    entries: list[Entry] = field(default_factory=list)
    notes: list[Diagnostic] = field(default_factory=list)


@dataclass(slots=True)
class Partition:
    groups: dict[str, PatientGroup]
    problems: list[Diagnostic]


def patient_of(entry: Entry, index: ReferenceIndex) -> str | None:
    r = entry.resource
    if entry.resource_type == "Patient":
        return index.ref_of(entry)
    for name in PATIENT_FIELDS:
        ref = r.get(name)
        if isinstance(ref, dict):
            resolved = index.resolve(ref, container=r, from_entry=entry)
            if resolved is not None:
                if resolved.resource.get("resourceType") == "Patient":
                    return resolved.ref
                continue
            target = index.target_type(ref, container=r, from_entry=entry)
            if target == "Patient":
                return index.ref_string(ref, container=r, from_entry=entry)
    return None


def partition(doc: FhirDocument, index: ReferenceIndex, wanted_types: Iterable[str] | None = None) -> Partition:
    """Group the document's entries by patient.

    Args:
        wanted_types: the resource types the caller will read; entries of other types are
            skipped (their patient does not matter), except Patient itself.
    """
    wanted = set(wanted_types) if wanted_types is not None else None
    groups: dict[str, PatientGroup] = {}
    orphans: list[Entry] = []
    provenances: list[Entry] = []
    owner: dict[str, str] = {}  # what each resource's patient is, for Provenance targets
    with_provenance = any(entry.resource_type == "Provenance" for entry in doc.entries)
    for entry in doc.entries:
        rt = entry.resource_type
        if rt in SHARED_TYPES:
            continue
        if wanted is not None and rt not in wanted and rt != "Patient":
            continue
        if rt == "Provenance":
            provenances.append(entry)
            continue
        pid = patient_of(entry, index)
        if pid is None:
            orphans.append(entry)
            continue
        group = groups.get(pid)
        if group is None:  # (not setdefault: that would build a group for every entry)
            group = groups[pid] = PatientGroup(pid)
        if rt == "Patient":
            group.patient_entry = entry
        else:
            group.entries.append(entry)
        if with_provenance:
            owner[index.ref_of(entry)] = pid
    problems: list[Diagnostic] = []
    for entry in provenances:
        pid = _provenance_patient(entry, index, owner)
        if pid is None:
            orphans.append(entry)
        else:
            groups.setdefault(pid, PatientGroup(pid)).entries.append(entry)
    if orphans and not groups:
        # no patient anywhere in the input (a lone resource without subject, say): evaluate
        # what there is as one anonymous record rather than dropping it
        groups[""] = PatientGroup("", None, list(orphans))
        orphans = []
    for entry in orphans:
        where = SourceLocation(doc.source, entry.line)
        if len(groups) == 1:
            group = next(iter(groups.values()))
            group.entries.append(entry)
            group.notes.append(
                Diagnostic(
                    "CPR-F021",
                    f"{entry.path}: {entry.resource_type} names no patient; assigned to the only patient "
                    f"of the input, {group.patient_ref}",
                    location=where,
                    path=entry.path,
                )
            )
        else:
            problems.append(
                Diagnostic(
                    "CPR-F020",
                    f"{entry.path}: cannot tell which patient this {entry.resource_type} belongs to "
                    f"(no subject/patient reference"
                    + (f" and {len(groups)} patients in the input)" if groups else ")"),
                    location=where,
                    path=entry.path,
                )
            )
    return Partition(dict(sorted(groups.items())), problems)


def _provenance_patient(entry: Entry, index: ReferenceIndex, owner: dict[str, str]) -> str | None:
    r = entry.resource
    direct = r.get("patient")
    if isinstance(direct, dict):
        ref = index.ref_string(direct, container=r, from_entry=entry)
        if ref:
            return ref
    for target in items(r.get("target")):
        ref = index.ref_string(target, container=r, from_entry=entry)
        if ref is None:
            continue
        if ref in owner:
            return owner[ref]
        if ref.startswith("Patient/"):
            return ref
    return None
