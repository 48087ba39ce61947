"""Telling R4 from R5 data, and validating with the matching fhir.resources models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from careplan_rules.errors import FhirInputError
from careplan_rules.fhir.reader import read_any
from careplan_rules.fhir.version import detect_version, normalise_version
from tests.factories import bundle, fired, kratom, patient, sertraline


def test_detects_r4_and_r5_from_shape() -> None:
    assert detect_version(read_any(bundle(kratom())).entries).version == "R4"
    r5 = detect_version(read_any(bundle(kratom(r5=True, status="recorded"))).entries)
    assert r5.version == "R5" and "CodeableReference" in r5.reason
    assert detect_version(read_any(bundle(patient())).entries).version == "R4"  # no signal: R4


def test_mixed_releases_are_an_error(engine: Any) -> None:
    data = bundle(patient(), kratom(), sertraline(r5=True))
    with pytest.raises(FhirInputError, match="mixes FHIR releases"):
        engine.evaluate(data, now="2026-06-01")


def test_forced_version_validates_with_that_release(engine: Any) -> None:
    with pytest.raises(FhirInputError, match="unknown element"):
        engine.evaluate(bundle(patient(), kratom(r5=True, status="recorded")), now="2026-06-01", fhir_version="R4")


def test_r5_statement_recorded_with_adherence(evaluate: Callable[..., Any]) -> None:
    taking = kratom(r5=True, status="recorded")
    assert fired(evaluate(patient(), taking, sertraline(r5=True))) >= {"kratom-use", "kratom-serotonergic"}
    not_taking = kratom(
        r5=True,
        status="recorded",
        adherence={
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/CodeSystem/medication-statement-adherence", "code": "not-taking"}
                ]
            }
        },
    )
    assert fired(evaluate(patient(), not_taking)) == set()


def test_invalid_fhir_names_the_fhir_path(engine: Any) -> None:
    bad = kratom(effective={"start": "2026-13-01"})
    with pytest.raises(FhirInputError) as info:
        engine.evaluate(bundle(patient(), bad), now="2026-06-01", source="in.json")
    diag = info.value.diagnostics[0]
    assert diag.code == "CPR-F010"
    assert diag.render().startswith("in.json: error CPR-F010: Bundle.entry[1].resource.effectivePeriod.start:")


def test_legacy_resource_types_are_named(engine: Any) -> None:
    old = {"resourceType": "MedicationOrder", "id": "o1", "patient": {"reference": "Patient/p1"}}
    results = engine.evaluate(bundle(patient(), old, kratom()), now="2026-06-01", on_error="collect")
    # MedicationOrder is not read by the rules, so it is skipped rather than rejected
    assert results[0].ok


@pytest.mark.parametrize(("text", "expected"), [("auto", "auto"), ("r4", "R4"), ("4.0.1", "R4"), ("R5", "R5")])
def test_normalise_version(text: str, expected: str) -> None:
    assert normalise_version(text) == expected


def test_normalise_version_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown FHIR version"):
        normalise_version("DSTU2")
