"""The engine on real public FHIR data (../shared/external): Synthea, AHRQ, HL7, US Core.

Skipped with a reason when ../shared is absent. These inputs show what synthetic examples
cannot: urn:uuid references everywhere, product-level RxNorm codes, decades-old "active"
prescriptions, resources without a patient, references to Medications in other files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from careplan_rules import Engine
from tests.factories import external

NOW = "2026-06-01T12:00:00Z"


def synthea_files() -> list[Path]:
    folder = external("smart-on-fhir-generated-sample-data-synthea-r4")
    return sorted(folder.glob("*.json"))


def test_synthea_bundles_evaluate_cleanly(engine: Engine) -> None:
    for path in synthea_files():
        results = engine.evaluate(path, now=NOW)
        assert len(results) == 1, path.name
        result = results[0]
        assert result.ok and result.patient.startswith("Patient/")
        # none of these patients has kratom documented
        assert not [f for f in result.findings if f.rule.startswith("kratom")], path.name


def test_ahrq_test_patient_evaluates(engine: Engine) -> None:
    path = external("ahrq-cds-connect-pain-management-summary", "r4_test_patients", "brenda_jackson.json")
    result = engine.evaluate(path, now=NOW)[0]
    assert result.ok


@pytest.mark.parametrize(
    "name",
    [
        "medicationrequest-coded-oral-axid.json",
        "medicationrequest-contained-oral-axid.json",
        "medicationrequest-self-tylenol.json",
        "medicationdispense-example.json",
        "careplan-ulcer-example.json",
        "condition-encounter-diagnosis-example1.json",
        "patient-example.json",
    ],
)
def test_us_core_examples(engine: Engine, name: str) -> None:
    assert engine.evaluate(external("hl7-us-core", name), now=NOW)[0].ok


def test_referenced_medication_in_another_file_is_an_error_until_supplied(engine: Engine) -> None:
    request = json.loads(external("hl7-us-core", "medicationrequest-referenced-oral-axid.json").read_text())
    medication = json.loads(external("hl7-us-core", "uscore-med2.json").read_text())
    alone = engine.evaluate(request, now=NOW, on_error="collect")[0]
    assert [e.code for e in alone.errors] == ["CPR-F030"]
    together = engine.evaluate([request, medication], now=NOW)[0]
    assert together.ok


def test_hl7_core_examples(engine: Engine) -> None:
    folder = external("hl7-fhir-r4-examples")
    for path in sorted(folder.glob("*.json")):
        for result in engine.evaluate(path, now=NOW, on_error="collect"):
            assert result.ok, (path.name, [e.render() for e in result.errors])
