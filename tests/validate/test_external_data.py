"""``validate`` on real public FHIR data (../shared/external), with the outcome each file should have.

Skipped with a reason when ../shared is absent. Expected outcomes, and why:

* the 5 Synthea R4 bundles: valid, not a single diagnostic (urn:uuid references everywhere,
  contained ``#referral``/``#coverage`` in Claims); as R5 they are R4 data (one CPR-V003 each);
  as a Bulk Data NDJSON export (one file per type, ``Type/id`` references) also valid;
* the 60 HL7 R4 core examples: no errors; one warning: ``medicationstatementexample7.json``
  has no date at all (CPR-V304). The examples stand alone, so their references to patients and
  practitioners are not expected to resolve;
* the 10 US Core examples: no errors, except ``medicationrequest-referenced-oral-axid.json``,
  whose Medication is in ``uscore-med2.json``: alone it is CPR-V202 (the engine cannot evaluate
  it either), together with that file it is valid;
* the AHRQ test patient ``brenda_jackson.json``: invalid, its ``Bundle.id`` has an underscore.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.temporal import parse_now
from careplan_rules.validate import Options, Validator
from tests.factories import NOW, external
from tests.validate.helpers import codes

HL7_WARNINGS = {"medicationstatementexample7.json": ["CPR-V304"]}
US_CORE_ERRORS = {"medicationrequest-referenced-oral-axid.json": ["CPR-V202"]}


def run(*paths: Path, fhir_version: str = "auto") -> dict[str, list[Diagnostic]]:
    """Validate files; diagnostics per file name."""
    found: dict[str, list[Diagnostic]] = {p.name: [] for p in paths}

    def sink(d: Diagnostic) -> None:
        assert d.location is not None
        found[Path(d.location.file).name].append(d)

    validator = Validator(Options(now=parse_now(NOW), fhir_version=fhir_version), sink)
    for p in paths:
        validator.file(p)
    validator.finish()
    return found


def synthea() -> list[Path]:
    files = sorted(external("smart-on-fhir-generated-sample-data-synthea-r4").glob("*.json"))
    assert len(files) == 5
    return files


def test_synthea_bundles_are_valid_without_a_single_diagnostic() -> None:
    found = run(*synthea())
    assert {name: [d.render() for d in ds] for name, ds in found.items() if ds} == {}


def test_synthea_read_as_r5_is_one_release_problem_per_bundle() -> None:
    found = run(*synthea(), fhir_version="R5")
    for name, ds in found.items():
        assert codes(ds) == ["CPR-V003"], name
        assert "looks like FHIR R4 data, not R5" in ds[0].message


def test_synthea_as_a_bulk_data_export_is_valid(tmp_path: Path) -> None:
    by_url: dict[str, str] = {}
    resources: list[dict[str, Any]] = []
    for path in synthea():
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            r = entry["resource"]
            by_url[entry["fullUrl"]] = f"{r['resourceType']}/{r['id']}"
            resources.append(r)
    lines: dict[str, list[str]] = {}
    for r in resources:
        text = re.sub(r'"reference": "(urn:uuid:[^"]+)"', lambda m: f'"reference": "{by_url[m[1]]}"', json.dumps(r))
        lines.setdefault(r["resourceType"], []).append(text)
    files = []
    for rt, items in lines.items():
        files.append(tmp_path / f"{rt}.ndjson")
        files[-1].write_text("\n".join(items) + "\n", encoding="utf-8")
    found = run(*sorted(files))
    assert {name: [d.render() for d in ds] for name, ds in found.items() if ds} == {}


def test_hl7_r4_core_examples() -> None:
    files = sorted(external("hl7-fhir-r4-examples").glob("*.json"))
    assert len(files) == 60
    found = run(*files)
    assert not [d.render() for ds in found.values() for d in ds if d.is_error]
    assert {name: codes(ds) for name, ds in found.items() if ds} == HL7_WARNINGS


def test_us_core_examples() -> None:
    files = sorted(external("hl7-us-core").glob("*.json"))
    assert len(files) == 10
    found = run(*files)
    assert {name: codes(ds) for name, ds in found.items() if ds} == US_CORE_ERRORS


def test_us_core_referenced_medication_is_valid_with_its_medication() -> None:
    request = json.loads(external("hl7-us-core", "medicationrequest-referenced-oral-axid.json").read_text())
    medication = json.loads(external("hl7-us-core", "uscore-med2.json").read_text())
    found: list[Diagnostic] = []
    validator = Validator(Options(now=parse_now(NOW)), found.append)
    validator.data([request, medication], "together.json")
    # valid; only its patient and prescriber are elsewhere (an array is checked like a bundle)
    assert sorted(set(codes(found))) == ["CPR-V201", "CPR-V207"]
    assert not [d for d in found if d.is_error]


def test_ahrq_test_patient_has_an_invalid_bundle_id() -> None:
    path = external("ahrq-cds-connect-pain-management-summary", "r4_test_patients", "brenda_jackson.json")
    (d,) = run(path)[path.name]
    assert d.code == "CPR-V001" and d.path == "Bundle.id" and "'brenda_jackson'" in d.message
