"""From a parsed input to per-patient fact records: version, validation, references, split.

Problems are attached as precisely as possible: a resource that fails validation makes *its
patient's* evaluation an error (the other patients of the input are unaffected); a problem
that cannot be attributed to a patient (mixed FHIR releases, a resource with no patient in a
multi-patient input) makes the whole input an error.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.facts import PatientRecord
from careplan_rules.fhir.normalize.record import MEDICATION_TYPES, build_record
from careplan_rules.fhir.partition import partition
from careplan_rules.fhir.reader import Entry, FhirDocument
from careplan_rules.fhir.references import ReferenceIndex
from careplan_rules.fhir.validation import validate_entry
from careplan_rules.fhir.version import detect_version
from careplan_rules.terminology.mentions import TermIndex

# Every fact these resources give the rules passes a value-set match first (each criterion
# that reads exposures, conditions or observations requires a value set:
# tests/fhir/test_pipeline_screening.py checks it), so one that mentions none of the packs'
# codes or terms (itself, or the Medication it references) cannot change an outcome: it is
# neither validated nor normalised. A malformed heart-rate Observation or omeprazole order must
# not cost a patient their safety warnings, and such resources are most of a record and of its
# validation time. Reviews (a review criterion may accept any completed Procedure), care plans
# and the patient are always read.
SCREENED_TYPES = frozenset({*MEDICATION_TYPES, "Observation", "Condition"})


@dataclass(slots=True)
class PreparedPatient:
    patient_ref: str
    record: PatientRecord | None
    errors: list[Diagnostic] = field(default_factory=list)
    notes: list[Diagnostic] = field(default_factory=list)


@dataclass(slots=True)
class PreparedInput:
    source: str
    version: str
    version_reason: str
    patients: list[PreparedPatient]
    errors: list[Diagnostic] = field(default_factory=list)


def prepare(
    doc: FhirDocument,
    *,
    fhir_version: str = "auto",
    read_types: Collection[str] | None = None,
    terms: TermIndex | None = None,
    facts_for_all: bool = True,
) -> PreparedInput:
    """Detect the release, split per patient, validate what the rules read, build facts.

    Args:
        fhir_version: ``auto`` (detect from the data), ``R4``, ``R4B`` or ``R5``.
        read_types: resource types the loaded rules read; others are neither validated nor
            normalised (None reads every type the engine knows).
        terms: the loaded packs' terminology; resources of :data:`SCREENED_TYPES` that
            mention none of it are not validated (None: every resource read is validated).
        facts_for_all: also build facts from those resources (explanations list them as
            considered and rejected); False skips them, which changes no outcome.
    """
    detection = detect_version(doc.entries)
    if fhir_version == "auto":
        if detection.conflict is not None:
            r4, r5 = detection.conflict
            return PreparedInput(
                doc.source,
                "R4",
                detection.reason,
                [],
                [
                    Diagnostic(
                        "CPR-F012",
                        f"input mixes FHIR releases: R4 shape ({r4.why} at {r4.where}) and R5 shape "
                        f"({r5.why} at {r5.where}); use --fhir-version to force one",
                        location=SourceLocation(doc.source),
                    )
                ],
            )
        version, reason = detection.version, detection.reason
    else:
        version, reason = fhir_version, "forced"
    release = "R5" if version == "R5" else "R4"
    index = ReferenceIndex(doc.entries)
    wanted = set(read_types) if read_types is not None else None
    if wanted is not None:
        wanted |= {"Patient"}
    parts = partition(doc, index, wanted)
    prepared = PreparedInput(doc.source, release, reason, [], list(parts.problems))

    validated_shared: dict[int, list[Diagnostic]] = {}
    for pid, group in parts.groups.items():
        errors: list[Diagnostic] = []
        notes = list(group.notes)
        skipped: set[int] = set()
        entries = ([group.patient_entry] if group.patient_entry is not None else []) + group.entries
        for entry in entries:
            if terms is not None and entry.resource_type in SCREENED_TYPES and not _mentions(entry, index, terms):
                if not facts_for_all:
                    skipped.add(id(entry.resource))
                elif unread := _validation_problems(entry, index, doc.source, release, validated_shared):
                    # explanations list its facts, but what is not valid FHIR cannot be read
                    # safely; no outcome depends on it, so it is a note, not an error
                    skipped.add(id(entry.resource))
                    notes.append(
                        Diagnostic(
                            "CPR-F013",
                            f"{unread[0].message}; this {entry.resource_type} is not read (it mentions none of "
                            "the packs' codes or terms, so no outcome depends on it)",
                            location=unread[0].location,
                            path=unread[0].path,
                        )
                    )
                continue
            invalid = _validation_problems(entry, index, doc.source, release, validated_shared)
            if invalid:
                # Not normalised: normalisation reads the shapes validation checks, and what
                # failed here can be any shape (the patient's result is these errors anyway;
                # the rest of the record is still read, so its own problems are reported too).
                skipped.add(id(entry.resource))
                errors.extend(invalid)
        record, problems = build_record(group, index, release, doc.source, skipped)
        errors.extend(problems)
        prepared.patients.append(PreparedPatient(pid, record if not errors else None, errors, notes))
    return prepared


def _validation_problems(
    entry: Entry, index: ReferenceIndex, source: str, release: str, cache: dict[int, list[Diagnostic]]
) -> list[Diagnostic]:
    """What validation finds wrong with a resource and the bundled Medications it references."""
    return validate_entry(entry, release, source) + _validate_references(entry, index, source, release, cache)


def _mentions(entry: Entry, index: ReferenceIndex, terms: TermIndex) -> bool:
    """Whether the resource, or a Medication it references, mentions the packs' terminology."""
    r = entry.resource
    if terms.mentions(r):
        return True
    if "medicationReference" not in r and "medication" not in r:
        return False  # the usual: no Medication to look at (no generator for each resource)
    for ref in _medication_references(r):
        resolved = index.resolve(ref, container=entry.resource, from_entry=entry)
        if resolved is None:
            return True  # unknown medication: read it, so normalisation reports the reference
        if terms.mentions(resolved.resource):
            return True
    return False


def _medication_references(r: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``medicationReference`` (R4) and ``medication.reference`` (R5) of an exposure."""
    if isinstance(r.get("medicationReference"), dict):
        yield r["medicationReference"]
    med = r.get("medication")
    if isinstance(med, dict) and isinstance(med.get("reference"), dict):
        yield med["reference"]


def _validate_references(
    entry: Entry, index: ReferenceIndex, source: str, release: str, cache: dict[int, list[Diagnostic]]
) -> list[Diagnostic]:
    """Validate bundled Medications that an exposure reads through ``medicationReference``."""
    r = entry.resource
    out: list[Diagnostic] = []
    for ref in _medication_references(r):
        resolved = index.resolve(ref, container=r, from_entry=entry)
        if resolved is None or resolved.entry is None:
            continue  # contained ones were validated with their container
        target = resolved.entry
        slot = id(target.resource)
        if slot not in cache:
            cache[slot] = validate_entry(target, release, source)
        out.extend(cache[slot])
    return out
