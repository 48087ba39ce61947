"""The local runner: same findings as the evaluation core, shared resources, errors, formats."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from careplan_rules.screen import FINDING_COLUMNS, ScreenError
from careplan_rules.screen.writers import check_format
from tests.factories import NOW, kratom, med_request, patient, sertraline
from tests.screen.conftest import ExportFactory, population, read_rows, screen, spec


def test_findings_match_the_evaluation_core(export: ExportFactory, tmp_path: Path) -> None:
    engine = spec().build()
    files = population()
    summary = screen(export(files), tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "findings.ndjson")
    everything = [r for items in files.values() for r in items if isinstance(r, dict)]
    expected = {
        (p.patient, f.rule, f.severity, f.indicator, f.summary, tuple(f.implicated))
        for p in engine.evaluate(everything, now=NOW)
        for f in p.findings
    }
    got = {(r["patient"], r["rule"], r["severity"], r["indicator"], r["summary"], tuple(r["implicated"])) for r in rows}
    assert got == expected
    assert summary.tally.patients == 4
    assert summary.tally.errors == 0
    assert summary.tally.lines["skipped"] == 1  # the Encounter: no rule reads it, so no patient needed


def test_a_medication_in_its_own_file_is_resolved(export: ExportFactory, tmp_path: Path) -> None:
    screen(export(population()), tmp_path / "out")
    rows = [r for r in read_rows(tmp_path / "out" / "findings.ndjson") if r["patient"] == "Patient/p2"]
    serotonergic = next(r for r in rows if r["rule"] == "kratom-serotonergic")
    assert "MedicationRequest/mr2" in serotonergic["implicated"]
    assert any(s.endswith("MedicationRequest.ndjson:2") for s in serotonergic["sources"])


def test_a_missing_medication_is_an_error_never_an_empty_result(export: ExportFactory, tmp_path: Path) -> None:
    files = population()
    del files["Medication.ndjson"]
    summary = screen(export(files), tmp_path / "out")
    errors = read_rows(tmp_path / "out" / "errors.ndjson")
    assert [(e["code"], e["patient"], e["line"], e["resource"]) for e in errors] == [
        ("CPR-F030", "Patient/p2", 2, "MedicationRequest/mr2")
    ]
    assert errors[0]["file"].endswith("MedicationRequest.ndjson")
    assert summary.tally.patients_with_errors == 1
    assert not [r for r in read_rows(tmp_path / "out" / "findings.ndjson") if r["patient"] == "Patient/p2"]


def test_a_provenance_known_through_its_target_reaches_its_patient(export: ExportFactory, tmp_path: Path) -> None:
    screen(export(population()), tmp_path / "out")
    fired = {(r["patient"], r["rule"]) for r in read_rows(tmp_path / "out" / "findings.ndjson")}
    # p4's kratom statement was verified by a practitioner (Provenance in its own file)
    assert ("Patient/p4", "missing-clinician-review") not in fired
    assert ("Patient/p1", "missing-clinician-review") in fired


def test_a_provenance_with_no_placeable_target_is_an_error(export: ExportFactory, tmp_path: Path) -> None:
    files = population()
    files["Provenance.ndjson"].append(
        {
            "resourceType": "Provenance",
            "id": "lost",
            "target": [{"reference": "MedicationStatement/nope"}],
            "recorded": "2026-05-20T10:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/dr1"}}],
        }
    )
    summary = screen(export(files), tmp_path / "out")
    errors = read_rows(tmp_path / "out" / "errors.ndjson")
    assert [(e["code"], e["kind"], e["line"], e["resource"]) for e in errors] == [
        ("CPR-F020", "no-patient", 2, "Provenance/lost")
    ]
    assert summary.tally.errors_by_kind == {"no-patient": 1}


def test_bad_lines_are_counted_and_written_with_file_and_line(export: ExportFactory, tmp_path: Path) -> None:
    files: dict[str, list[object]] = {
        "Patient.ndjson": [patient("p1"), '{"resourceType": "Patient", "id": ', "", "[1, 2]"],
        "MedicationStatement.ndjson": [
            kratom("k1", subject="Patient/p1"),
            {
                "resourceType": "MedicationStatement",
                "id": "orphan",
                "status": "active",
                "medicationCodeableConcept": {"text": "kratom"},
            },
            {
                "resourceType": "MedicationStatement",
                "id": "bad",
                "status": "active",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"text": "kratom"},
                "effectiveDateTime": "2026-02-30",
            },
        ],
    }
    summary = screen(export(files), tmp_path / "out")  # type: ignore[arg-type]
    errors = read_rows(tmp_path / "out" / "errors.ndjson")
    got = [(Path(e["file"]).name, e["line"], e["code"], e["kind"]) for e in errors]
    assert got == [
        ("MedicationStatement.ndjson", 2, "CPR-F020", "no-patient"),
        ("Patient.ndjson", 2, "CPR-F005", "malformed"),
        ("Patient.ndjson", 4, "CPR-F006", "malformed"),
        ("MedicationStatement.ndjson", 3, "CPR-F010", "evaluation"),
    ]
    assert "2026-02-30" in errors[-1]["message"] and errors[-1]["patient"] == "Patient/p1"
    assert summary.tally.errors == 4
    assert summary.tally.patients == 1 and summary.tally.patients_with_errors == 1
    assert summary.tally.lines["blank"] == 1


def test_byte_ranges_of_big_files_keep_line_numbers_and_findings(export: ExportFactory, tmp_path: Path) -> None:
    files = population()
    files["MedicationRequest.ndjson"] = (
        [med_request(f"x{i}", "ibuprofen", subject=f"Patient/p{i % 4 + 1}") for i in range(30)]
        + files["MedicationRequest.ndjson"]
        + ["not json"]
    )
    root = export(files)
    whole = screen(root, tmp_path / "whole")
    cut = screen(root, tmp_path / "cut", task_bytes=300)
    assert (tmp_path / "whole" / "findings.ndjson").read_bytes() == (tmp_path / "cut" / "findings.ndjson").read_bytes()
    assert read_rows(tmp_path / "cut" / "errors.ndjson") == read_rows(tmp_path / "whole" / "errors.ndjson")
    assert read_rows(tmp_path / "cut" / "errors.ndjson")[0]["line"] == 34
    assert whole.tally.to_json() == cut.tally.to_json()


def test_gzipped_files_are_read(export: ExportFactory, tmp_path: Path) -> None:
    root = export(population())
    for f in root.glob("MedicationStatement*.ndjson"):
        (f.parent / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    screen(root, tmp_path / "out-gz")
    screen(export(population(), name="plain"), tmp_path / "out-plain")
    gz = read_rows(tmp_path / "out-gz" / "findings.ndjson")
    plain = read_rows(tmp_path / "out-plain" / "findings.ndjson")
    strip = [{k: v for k, v in r.items() if k != "sources"} for r in gz]
    assert strip == [{k: v for k, v in r.items() if k != "sources"} for r in plain]
    assert any(s.endswith(".ndjson.gz:1") for r in gz for s in r["sources"])


def test_csv_output(export: ExportFactory, tmp_path: Path) -> None:
    root = export(population())
    screen(root, tmp_path / "csv", fmt="csv")
    screen(root, tmp_path / "nd")
    with open(tmp_path / "csv" / "findings.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(FINDING_COLUMNS)
    as_lists = [{k: v.split(" ") if k in ("implicated", "sources") else v for k, v in r.items()} for r in rows]
    assert as_lists == read_rows(tmp_path / "nd" / "findings.ndjson")


def test_parquet_output(export: ExportFactory, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    root = export(population())
    screen(root, tmp_path / "pq", fmt="parquet")
    screen(root, tmp_path / "nd")
    table = pq.read_table(tmp_path / "pq" / "findings.parquet").to_pylist()
    assert table == read_rows(tmp_path / "nd" / "findings.ndjson")


def test_parquet_without_pyarrow_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ScreenError, match=r"pip install 'careplan-rules\[parquet\]'"):
        check_format("parquet")


def test_a_finished_screen_is_not_overwritten_by_accident(export: ExportFactory, tmp_path: Path) -> None:
    root = export(population())
    screen(root, tmp_path / "out")
    with pytest.raises(ScreenError, match="holds a finished screen"):
        screen(root, tmp_path / "out")
    again = screen(root, tmp_path / "out", overwrite=True)
    assert again.tally.patients == 4


def test_a_folder_with_other_files_is_refused(export: ExportFactory, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ScreenError, match="not empty"):
        screen(export(population()), tmp_path / "out", overwrite=True)


def test_same_rows_whatever_the_number_of_workers(export: ExportFactory, tmp_path: Path) -> None:
    root = export(population())
    screen(root, tmp_path / "one")
    summary = screen(root, tmp_path / "two", workers=2)
    for name in ("findings.ndjson", "errors.ndjson"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert summary.tally.patients == 4
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["patients"] == 4


def test_patient_resources_may_come_before_the_patient(export: ExportFactory, tmp_path: Path) -> None:
    # one file holding everything in an unhelpful order: the grouping does not care
    root = export({"all.ndjson": [sertraline("s1"), kratom("k1"), patient("p1")]})
    summary = screen(root, tmp_path / "out")
    assert summary.tally.patients == 1
    assert summary.tally.findings_by_rule["kratom-serotonergic"] == 1
