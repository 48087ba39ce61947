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


# What the bundled pack says about each public record, and why (docs/rules.md explains the rules).
SYNTHEA_EXPECTED = {
    # clonazepam (Synthea's 1153378 "Clonazepam [Klonopin]", outside the CDC value sets, matched through
    # the ingredient map) but no opioid: no opioid-benzodiazepine
    "Alberto_Atencio": set(),
    # active oxycodone/APAP without a risk factor and without a computable dose: nothing to say
    "Chet_Thompson": set(),
    # active sertraline ("Sertraline 100MG", a strength-level code mapped to ingredient 36437): the
    # depression plan; hydrocodone is active too but has no overdose risk factor on record
    "Donnell_Torphy": {"depression-support-plan"},
    # hydrocodone/APAP + sertraline + a documented opioid-abuse condition (SNOMED 5602001): naloxone
    "Gilberto_Orosco": {"depression-support-plan", "naloxone-offer"},
    # morphine, midazolam and hydrocodone all stopped in 2017: nothing is current
    "Jordan_Cruickshank": set(),
}


def test_synthea_bundles(engine: Engine) -> None:
    for path in synthea_files():
        results = engine.evaluate(path, now=NOW)
        assert len(results) == 1, path.name
        result = results[0]
        assert result.ok and result.patient.startswith("Patient/")
        name = "_".join(path.stem.split("_")[:2])
        assert {f.rule for f in result.findings} == SYNTHEA_EXPECTED[name], name
        # none of these patients has kratom documented
        assert not [f for f in result.findings if f.rule.startswith("kratom")], path.name


def test_synthea_stopped_2017_combination_is_explained(engine: Engine) -> None:
    path = next(p for p in synthea_files() if p.name.startswith("Jordan_Cruickshank"))
    result = engine.evaluate(path, now=NOW, trace=True)[0]
    outcome = next(o for o in result.outcomes if o.rule_id == "opioid-benzodiazepine")
    reasons = [
        r.reason for r in outcome.criteria["benzodiazepine"].rejected if "Midazolam" in r.reason or "ended" in r.reason
    ]
    assert any("ended 2017" in r for r in reasons), reasons


def test_ahrq_test_patient(engine: Engine) -> None:
    path = external("ahrq-cds-connect-pain-management-summary", "r4_test_patients", "brenda_jackson.json")
    result = engine.evaluate(path, now=NOW)[0]
    # oxycodone ER + IR with chlordiazepoxide (all still "active" in the record), duloxetine and a
    # depression diagnosis
    assert {f.rule for f in result.findings} == {"opioid-benzodiazepine", "naloxone-offer", "depression-support-plan"}
    benzo = result.finding("opioid-benzodiazepine")
    assert benzo is not None
    # chlordiazepoxide 25 MG (905505) is in the CDC benzodiazepine expansion copied into the pack
    assert [(e.matched_by, e.matched) for e in benzo.evidence if e.criterion == "benzodiazepine"] == [
        ("code", "905505")
    ]


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
