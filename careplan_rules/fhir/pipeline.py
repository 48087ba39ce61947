"""From a parsed input to per-patient fact records: version, validation, references, split.

Problems are attached as precisely as possible: a resource that fails validation makes *its
patient's* evaluation an error (the other patients of the input are unaffected); a problem
that cannot be attributed to a patient (mixed FHIR releases, a resource with no patient in a
multi-patient input) makes the whole input an error.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.facts import PatientRecord
from careplan_rules.fhir.normalize.record import build_record
from careplan_rules.fhir.partition import partition
from careplan_rules.fhir.reader import Entry, FhirDocument
from careplan_rules.fhir.references import ReferenceIndex
from careplan_rules.fhir.validation import validate_entry
from careplan_rules.fhir.version import detect_version
from careplan_rules.terminology.mentions import TermIndex

EntryFilter = Callable[[Entry], bool]

# Every fact an Observation or a Condition gives the rules passes a value-set match first
# (each criterion that reads them requires a value set: tests/fhir/test_pipeline_screening.py
# checks it), so one that mentions none of the packs' codes or terms cannot change an outcome
# and is not validated: a malformed heart-rate Observation must not stop a patient's safety
# warnings, and Observations are most of a record and of its validation time. Medications,
# reviews (a review criterion may accept any completed Procedure), care plans and the patient
# are few and always validated.
SCREENED_TYPES = frozenset({"Observation", "Condition"})


def validation_filter(read_types: Collection[str], terms: TermIndex | None) -> EntryFilter:
    """Which entries :func:`prepare` validates: the read types, screened by ``terms`` when given."""
    wanted = frozenset(read_types) | {"Patient"}

    def needs_validation(entry: Entry) -> bool:
        rt = entry.resource_type
        if rt not in wanted:
            return False
        return terms is None or rt not in SCREENED_TYPES or terms.mentions(entry.resource)

    return needs_validation


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
    needs_validation: EntryFilter | None = None,
    facts_for_all: bool = True,
) -> PreparedInput:
    """Detect the release, split per patient, validate what the rules read, build facts.

    Args:
        fhir_version: ``auto`` (detect from the data), ``R4``, ``R4B`` or ``R5``.
        read_types: resource types the loaded rules read; others are neither validated nor
            normalised (None reads every type the engine knows).
        needs_validation: further narrows which entries are validated (e.g. only
            Observations whose code a rule reads); default: every entry of ``read_types``.
        facts_for_all: also build facts from the entries ``needs_validation`` turns down
            (explanations list them as considered and rejected); False skips them, which
            changes no outcome when the filter is :func:`validation_filter`'s.
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
        skipped: set[int] = set()
        entries = ([group.patient_entry] if group.patient_entry is not None else []) + group.entries
        for entry in entries:
            if needs_validation is not None and not needs_validation(entry):
                if not facts_for_all:
                    skipped.add(id(entry.resource))
                continue
            errors.extend(validate_entry(entry, release, doc.source))
            errors.extend(_validate_references(entry, index, doc.source, release, validated_shared))
        record, problems = build_record(group, index, release, doc.source, skipped)
        errors.extend(problems)
        prepared.patients.append(PreparedPatient(pid, record if not errors else None, errors, list(group.notes)))
    return prepared


def _validate_references(
    entry: Entry, index: ReferenceIndex, source: str, release: str, cache: dict[int, list[Diagnostic]]
) -> list[Diagnostic]:
    """Validate bundled Medications that an exposure reads through ``medicationReference``."""
    r = entry.resource
    refs = []
    for key in ("medicationReference",):
        if isinstance(r.get(key), dict):
            refs.append(r[key])
    med = r.get("medication")
    if isinstance(med, dict) and isinstance(med.get("reference"), dict):
        refs.append(med["reference"])
    out: list[Diagnostic] = []
    for ref in refs:
        resolved = index.resolve(ref, container=r, from_entry=entry)
        if resolved is None or resolved.entry is None:
            continue  # contained ones were validated with their container
        target = resolved.entry
        slot = id(target.resource)
        if slot not in cache:
            cache[slot] = validate_entry(target, release, source)
        out.extend(cache[slot])
    return out
