"""A malformed shape anywhere in a record is an input error, or a note where no outcome can
depend on it, never an engine failure (found by mutating the bundled examples at random:
each case below made the engine raise TypeError or KeyError, which the CLI reported as an
internal error and the service as "the rules engine failed unexpectedly")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from careplan_rules import Engine
from careplan_rules.fhir.reader import parse_data
from tests.factories import bundle, fired, kratom, med_request, patient, sertraline

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TRAMADOL = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "835603"}]}


def results(engine: Engine, *resources: dict[str, Any], trace: bool = False) -> Any:
    [result] = engine.evaluate_document(parse_data(bundle(*resources), "record.json"), NOW, trace=trace)
    return result


@pytest.mark.parametrize(
    "resource",
    [
        kratom(status={"code": "active"}),  # read by release detection before validation
        med_request("t1", TRAMADOL, dosageInstruction=5),  # read by dose normalisation
        med_request("t2", TRAMADOL, dosageInstruction=[{"doseAndRate": 10**20}]),
        kratom(contained=True, medicationReference={"reference": "#m1"}),  # read by reference resolution
        kratom(contained=[{"resourceType": "NoSuchType", "id": "m1"}]),  # fhir_core raised KeyError
        {"resourceType": "Provenance", "id": "pv", "target": 5, "recorded": "2026-05-01T00:00:00Z"},
        {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan", "activity": 5},
    ],
    ids=[
        "status-object",
        "dosage-number",
        "dose-and-rate-number",
        "contained-boolean",
        "contained-type",
        "provenance-target",
        "careplan-activity",
    ],
)
def test_a_malformed_resource_the_rules_read_is_an_input_error(engine: Engine, resource: dict[str, Any]) -> None:
    result = results(engine, patient(), kratom("k0"), resource)
    assert result.errors, "a malformed resource the rules read must fail the patient, loudly"
    assert all(e.code == "CPR-F010" for e in result.errors), [e.render() for e in result.errors]
    assert all(e.location is not None and e.location.file == "record.json" for e in result.errors)


def test_the_rest_of_a_record_is_still_checked_when_one_resource_is_invalid(engine: Engine) -> None:
    unresolvable = kratom("k2", medicationReference={"reference": "Medication/missing"})
    del unresolvable["medicationCodeableConcept"]
    result = results(engine, patient(), med_request("t1", TRAMADOL, dosageInstruction=5), unresolvable)
    assert {e.code for e in result.errors} == {"CPR-F010", "CPR-F030"}


@pytest.mark.parametrize("change", [{"category": 5}, {"component": True}, {"note": 7}])
def test_an_invalid_resource_no_rule_can_read_is_a_note_in_explanations(engine: Engine, change: dict[str, Any]) -> None:
    heart_rate = {
        "resourceType": "Observation",
        "id": "hr1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-05-01",
        **change,
    }
    plain = results(engine, patient(), kratom(), sertraline(), heart_rate)
    traced = results(engine, patient(), kratom(), sertraline(), heart_rate, trace=True)
    # no outcome depends on it: the same findings either way, and no error
    assert fired(traced) == fired(plain) and "kratom-serotonergic" in fired(plain)
    [note] = [n for n in traced.notes if n.code == "CPR-F013"]
    assert "Observation" in note.message and "not read" in note.message
    assert not [n for n in plain.notes if n.code == "CPR-F013"]
