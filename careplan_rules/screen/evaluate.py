"""Evaluate one patient of an export: their lines in, finding and error rows out.

This is the only place a screen touches the evaluation core, and both runners call it, so a
patient gives the same rows locally and on Spark. The patient's lines (from several files)
and the shared resources they reference become one in-memory NDJSON document for
:meth:`Engine.evaluate_document`; each entry's ``line`` is its position in that document (a
*slot*), which maps every diagnostic back to the export file and line it came from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from careplan_rules.api import Engine
from careplan_rules.diagnostics import Diagnostic
from careplan_rules.fhir.reader import Entry, FhirDocument
from careplan_rules.fhir.references import canonical_ref
from careplan_rules.screen.rows import KIND_EVALUATION, ErrorRow, FindingRow
from careplan_rules.screen.shared import SharedLookup, referenced_shared

SLOT_SOURCE = "<screen-patient>"


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One line of the export: where it is and what it says."""

    file: str
    line: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class PatientOutcome:
    """The rows one patient contributes."""

    patient: str
    findings: tuple[FindingRow, ...]
    errors: tuple[ErrorRow, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def screen_patient(
    engine: Engine,
    patient: str,
    lines: Sequence[SourceLine],
    shared: SharedLookup,
    now: datetime,
    now_text: str,
    fhir_version: str = "auto",
) -> PatientOutcome:
    """Evaluate one patient's resources.

    Args:
        engine: the worker's engine.
        patient: the patient's key (``"Patient/p1"``), from the grouping.
        lines: every line of the export that belongs to the patient, in input order.
        shared: the side index of shared resources.
        now: the evaluation time; ``now_text`` is its ISO form for the rows.
        fhir_version: ``auto``, ``R4``, ``R4B`` or ``R5``.

    Returns:
        The patient's finding rows (in the engine's order) and error rows. Problems are
        rows, never exceptions: one patient must not stop a population run, and a patient
        that could not be evaluated is an error row, never an empty finding list.
    """
    try:
        resources = [json.loads(item.raw) for item in lines]
        extra = referenced_shared((item.raw for item in lines), shared)
        slots = [(item.file, item.line) for item in lines] + [(s.file, s.line) for s, _ in extra]
        entries = tuple(
            Entry(r, r["resourceType"], None, slot)
            for slot, r in enumerate([*resources, *(data for _, data in extra)], start=1)
        )
        results = engine.evaluate_document(FhirDocument(SLOT_SOURCE, "ndjson", entries), now, fhir_version=fhir_version)
    except Exception as exc:  # a bug in the core: report the patient, keep screening the others
        message = f"internal error while evaluating this patient: {type(exc).__name__}: {exc}"
        return PatientOutcome(patient, (), (ErrorRow(KIND_EVALUATION, "CPR-P010", message, patient=patient),))
    refs = [canonical_ref(e) for e in entries]
    where = {ref: f"{file}:{line}" for ref, (file, line) in zip(refs, slots, strict=True)}
    findings: list[FindingRow] = []
    errors: list[ErrorRow] = []
    for result in results:
        who = result.patient or patient
        errors.extend(_error_row(d, who, slots, refs) for d in result.errors)
        for f in result.findings:
            findings.append(
                FindingRow(
                    patient=who,
                    rule=f.rule,
                    rule_version=f.rule_version,
                    pack=f.pack,
                    pack_version=f.pack_version,
                    severity=f.severity,
                    indicator=f.indicator,
                    title=f.title,
                    summary=f.summary,
                    implicated=f.implicated,
                    sources=tuple(where[r] for r in f.implicated if r in where),
                    now=now_text,
                )
            )
    return PatientOutcome(patient, tuple(findings), tuple(errors))


def _error_row(diag: Diagnostic, patient: str, slots: list[tuple[str, int]], refs: list[str]) -> ErrorRow:
    loc = diag.location
    if loc is not None and loc.file == SLOT_SOURCE and loc.line is not None and 0 < loc.line <= len(slots):
        file, line = slots[loc.line - 1]
        return ErrorRow(KIND_EVALUATION, diag.code, diag.message, file, line, patient, refs[loc.line - 1])
    return ErrorRow(KIND_EVALUATION, diag.code, diag.message, None, None, patient, None)
