"""NDJSON streamed line by line (careplan_rules/fhir/stream.py) and checked as one export."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.fhir.stream import iter_ndjson
from careplan_rules.validate import Options, Validator
from tests.factories import bundle, kratom, patient, sertraline
from tests.validate.helpers import codes, only

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


def test_lines_are_parsed_lazily_with_their_numbers() -> None:
    raw = ndjson(patient()) + b"\n   \n" + ndjson(kratom())
    consumed: list[bytes] = []

    def source() -> Any:
        for line in io.BytesIO(raw):
            consumed.append(line)
            yield line

    lines = iter_ndjson(source(), "x.ndjson")
    first = next(lines)
    assert first.number == 1 and first.entries[0].resource_type == "Patient" and len(consumed) == 1
    second = next(lines)
    assert second.number == 4 and second.entries[0].path == "MedicationStatement" and second.entries[0].line == 4
    assert first.size + second.size == len(raw)  # blank lines count towards progress


def test_a_bad_line_is_reported_and_reading_goes_on() -> None:
    raw = ndjson(patient()) + b'{"resourceType": "Patient", "id": \n' + b"[1, 2]\n" + b"\xff\xfe\n" + ndjson(kratom())
    lines = list(iter_ndjson(io.BytesIO(raw), "x.ndjson"))
    assert [(ln.number, ln.error.code if ln.error else None) for ln in lines] == [
        (1, None),
        (2, "CPR-F005"),
        (3, "CPR-F006"),
        (4, "CPR-F003"),
        (5, None),
    ]
    bad = lines[1].error
    assert bad is not None and bad.render().startswith("x.ndjson:2:35: error CPR-F005: malformed JSON")


def test_a_bundle_on_a_line_is_flattened_and_a_bom_is_ignored() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(bundle(patient(), kratom())).encode() + b"\n"
    (line,) = iter_ndjson(io.BytesIO(raw), "x.ndjson")
    assert [e.path for e in line.entries] == ["Bundle.entry[0].resource", "Bundle.entry[1].resource"]
    assert all(e.line == 1 for e in line.entries)


def run_export(files: dict[str, bytes]) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    validator = Validator(Options(now=NOW), found.append)
    for name, raw in files.items():
        validator.ndjson(io.BytesIO(raw), name)
    validator.finish()
    return found


def test_references_across_ndjson_files_resolve_at_the_end() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "kratom"}}
    request = sertraline(medicationReference={"reference": "Medication/m1"})
    del request["medicationCodeableConcept"]
    # files in Bulk Data order: the requests come before the patient and the medication
    found = run_export(
        {
            "MedicationRequest.ndjson": ndjson(request),
            "Medication.ndjson": ndjson(med),
            "Patient.ndjson": ndjson(patient()),
        }
    )
    assert found == []


def test_references_that_never_resolve_are_reported_once_per_target() -> None:
    requests = [sertraline(f"s{i}", subject="Patient/p9") for i in range(3)]
    found = run_export({"MedicationRequest.ndjson": ndjson(*requests), "Patient.ndjson": ndjson(patient())})
    d = only(found, "CPR-V207")
    assert d.render().startswith("MedicationRequest.ndjson:1: warning CPR-V207: MedicationRequest.subject:")
    assert "(and 2 more reference(s) to it)" in d.message


def test_duplicates_across_ndjson_files_and_patients_are_not_counted() -> None:
    found = run_export({"a.ndjson": ndjson(patient("p1"), patient("p2")), "b.ndjson": ndjson(patient("p1"))})
    d = only(found, "CPR-V204")
    assert d.location is not None and (d.location.file, d.location.line) == ("b.ndjson", 1)
    assert "Patient/p1 is also at a.ndjson:1" in d.message
    assert "CPR-V308" not in codes(found)  # an export holds many patients by nature


def test_release_is_decided_across_the_export() -> None:
    r5 = kratom(r5=True, status="recorded")
    assert run_export({"MedicationStatement.ndjson": ndjson(r5), "Patient.ndjson": ndjson(patient())}) == []
    mixed = run_export({"a.ndjson": ndjson(kratom()), "b.ndjson": ndjson(kratom("k2", r5=True, status="recorded"))})
    assert "CPR-V005" in codes(mixed)
