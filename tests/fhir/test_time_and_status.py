"""Facts with explicit time semantics: current / recent / past / never, as of ``now``.

Uses the bundled ``kratom-serotonergic`` rule (lookback P90D) as the probe: it fires only when
both exposures count as of now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from careplan_rules.facts import MedicationConcept, MedicationExposure, Timing, exposure_timing
from careplan_rules.temporal import parse_duration
from tests.factories import fired, kratom, med_request, med_statement, patient, rx, sertraline

NOW = "2026-06-01T12:00:00Z"
Evaluate = Callable[..., Any]


def interacts(evaluate: Evaluate, *resources: dict[str, Any]) -> bool:
    return "kratom-serotonergic" in fired(evaluate(patient(), *resources, now=NOW))


# --- MedicationStatement ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "intended", "on-hold", "unknown"])
def test_statement_statuses_that_count_as_current(evaluate: Evaluate, status: str) -> None:
    assert interacts(evaluate, kratom(status=status, effective="2024-01-01"), sertraline())


@pytest.mark.parametrize("status", ["entered-in-error", "not-taken"])
def test_statement_statuses_that_never_count(evaluate: Evaluate, status: str) -> None:
    assert not interacts(evaluate, kratom(status=status), sertraline())


def test_completed_within_lookback_counts_as_recent(evaluate: Evaluate) -> None:
    stopped = kratom(status="completed", effective={"start": "2026-01-01", "end": "2026-04-15"})
    assert interacts(evaluate, stopped, sertraline())


def test_completed_before_lookback_is_past(evaluate: Evaluate) -> None:
    stopped = kratom(status="completed", effective={"start": "2025-01-01", "end": "2026-02-15"})
    assert not interacts(evaluate, stopped, sertraline())


def test_active_status_with_a_period_that_ended_is_judged_by_its_end(evaluate: Evaluate) -> None:
    assert not interacts(evaluate, kratom(effective={"start": "2024-01-01", "end": "2025-01-01"}), sertraline())
    assert interacts(evaluate, kratom(effective={"start": "2024-01-01", "end": "2026-05-01"}), sertraline())


def test_completed_without_end_uses_latest_record_date(evaluate: Evaluate) -> None:
    recent = kratom(status="completed", effective="2026-05-01")
    old = kratom(status="completed", effective="2025-01-01", date_asserted="2025-01-02")
    assert interacts(evaluate, recent, sertraline())
    assert not interacts(evaluate, old, sertraline())


def test_partial_end_date_counts_until_its_end(evaluate: Evaluate) -> None:
    # "2026-03" ends on 2026-03-31: inside the 90-day lookback from 2026-06-01 (starts 2026-03-03)
    assert interacts(evaluate, kratom(status="stopped", effective={"start": "2026-01", "end": "2026-03"}), sertraline())


# --- MedicationRequest ----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "on-hold", "draft", "unknown"])
def test_request_statuses_that_count(evaluate: Evaluate, status: str) -> None:
    assert interacts(evaluate, kratom(), sertraline(status=status))


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_request_statuses_that_never_count(evaluate: Evaluate, status: str) -> None:
    assert not interacts(evaluate, kratom(), sertraline(status=status))


def test_draft_order_for_the_future_counts(evaluate: Evaluate) -> None:
    # what order-sign reviews: an unsigned order that has not started yet
    assert interacts(evaluate, kratom(), sertraline(status="draft", authored="2026-06-01"))


def test_do_not_perform_order_never_counts(evaluate: Evaluate) -> None:
    assert not interacts(evaluate, kratom(), sertraline(doNotPerform=True))


def test_stopped_request_recent_or_past_by_authored_date(evaluate: Evaluate) -> None:
    assert interacts(evaluate, kratom(), sertraline(status="stopped", authored="2026-04-20"))
    assert not interacts(evaluate, kratom(), sertraline(status="stopped", authored="2024-04-20"))


def test_r5_request_ended_status(evaluate: Evaluate) -> None:
    assert not interacts(
        evaluate, kratom(r5=True, status="recorded"), sertraline(r5=True, status="ended", authored="2025-01-01")
    )


# --- MedicationDispense and MedicationAdministration ----------------------------------------


def dispense(status: str, handed: str, days: int | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "id": "d1",
        "status": status,
        "medicationCodeableConcept": rx("328670", "Sertraline 100MG"),
        "subject": {"reference": "Patient/p1"},
        "whenHandedOver": handed,
    }
    if days is not None:
        r["daysSupply"] = {"value": days, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
    return r


def test_completed_dispense_covers_its_days_supply(evaluate: Evaluate) -> None:
    assert interacts(evaluate, kratom(), dispense("completed", "2026-05-20", 30))
    # handed over a year ago with a 30-day supply: ended long before the lookback
    assert not interacts(evaluate, kratom(), dispense("completed", "2025-05-20", 30))


@pytest.mark.parametrize("status", ["cancelled", "declined", "entered-in-error"])
def test_dispense_statuses_that_never_count(evaluate: Evaluate, status: str) -> None:
    assert not interacts(evaluate, kratom(), dispense(status, "2026-05-20", 30))


def administration(status: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": "a1",
        "status": status,
        "medicationCodeableConcept": rx("328670", "Sertraline 100MG"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
    }


def test_administration(evaluate: Evaluate) -> None:
    assert interacts(evaluate, kratom(), administration("completed", "2026-05-30T08:00:00Z"))
    assert not interacts(evaluate, kratom(), administration("not-done", "2026-05-30T08:00:00Z"))
    assert not interacts(evaluate, kratom(), administration("completed", "2025-05-30T08:00:00Z"))


# --- another patient's data never joins -------------------------------------------------------


def test_other_patients_data_does_not_join(engine: Any) -> None:
    from tests.factories import bundle

    data = bundle(patient("p1"), patient("p2"), kratom(subject="Patient/p1"), sertraline(subject="Patient/p2"))
    results = engine.evaluate(data, now=NOW)
    assert [r.patient for r in results] == ["Patient/p1", "Patient/p2"]
    assert fired(results[0]) == {"kratom-use", "missing-clinician-review"}
    assert "kratom-serotonergic" not in fired(results[1]) and not any(r.startswith("kratom") for r in fired(results[1]))


# --- the timing function itself ---------------------------------------------------------------


def exposure(**kw: Any) -> MedicationExposure:
    base: dict[str, Any] = dict(
        ref="MedicationStatement/x",
        resource_type="MedicationStatement",
        kind="statement",
        status="active",
        excluded_reason=None,
        ongoing=True,
        start=None,
        end=None,
        recorded=None,
        medication=MedicationConcept(),
    )
    base.update(kw)
    return MedicationExposure(**base)


def test_timing_rules() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    p90 = parse_duration("P90D")
    assert exposure_timing(exposure(), now, None) is Timing.CURRENT
    assert exposure_timing(exposure(excluded_reason="x"), now, p90) is Timing.EXCLUDED
    ended = datetime(2026, 4, 1, tzinfo=UTC)
    assert exposure_timing(exposure(ongoing=False, end=ended), now, p90) is Timing.RECENT
    assert exposure_timing(exposure(ongoing=False, end=ended), now, None) is Timing.PAST
    # a finished record with no date at all counts as recent rather than being dropped
    assert exposure_timing(exposure(ongoing=False), now, p90) is Timing.RECENT


def test_statement_with_only_an_effective_date_is_taking_since_then(evaluate: Evaluate) -> None:
    old_sertraline = med_statement("s9", rx("36437", "sertraline"), effective="2020-01-01")
    assert interacts(evaluate, kratom(), old_sertraline)
    assert interacts(evaluate, kratom(), med_request("s8", rx("36437"), authored="2019-01-01"))


# --- laboratory results as exposure evidence ------------------------------------------------

LAB = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
MITRAGYNINE = {"coding": [{"system": "http://loinc.org", "code": "72732-1"}], "text": "Mitragynine, urine"}


def lab(value: dict[str, Any], interpretation: str | None = None, **kw: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": kw.pop("rid", "lab1"),
        "status": kw.pop("status", "final"),
        "category": kw.pop("category", LAB),
        "code": MITRAGYNINE,
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": kw.pop("effective", "2026-05-20"),
        **value,
        **kw,
    }
    if interpretation:
        obs["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": interpretation,
                    }
                ]
            }
        ]
    return obs


@pytest.mark.parametrize(
    ("value", "interpretation", "positive"),
    [
        ({"valueQuantity": {"value": 40, "unit": "ng/mL"}}, None, True),
        ({"valueQuantity": {"value": 40, "unit": "ng/mL"}}, "N", False),  # flag wins over the number
        ({"valueQuantity": {"value": 1, "comparator": "<", "unit": "ng/mL"}}, None, False),
        ({"valueQuantity": {"value": 0, "unit": "ng/mL"}}, None, False),
        ({"valueQuantity": {"value": 3, "unit": "ng/mL"}}, "POS", True),
        ({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}}, None, True),
        (
            {"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}},
            None,
            False,
        ),
        ({"valueCodeableConcept": {"text": "Not detected"}}, None, False),
        ({"valueString": "DETECTED (confirmed by LC-MS/MS)"}, None, True),
        ({"valueString": "see report"}, None, False),  # unreadable: not evidence either way
        ({}, "DET", True),
        ({}, None, False),
    ],
)
def test_positive_kratom_lab_result_is_exposure_evidence(
    evaluate: Evaluate, value: dict[str, Any], interpretation: str | None, positive: bool
) -> None:
    assert interacts(evaluate, lab(value, interpretation), sertraline()) is positive


def test_lab_result_timing_status_and_category(evaluate: Evaluate) -> None:
    positive = {"valueQuantity": {"value": 40, "unit": "ng/mL"}}
    assert not interacts(evaluate, lab(positive, effective="2025-12-01"), sertraline())  # outside P90D
    assert not interacts(evaluate, lab(positive, status="entered-in-error"), sertraline())
    vitals = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
    ]
    assert not interacts(evaluate, lab(positive, category=vitals), sertraline())
    assert interacts(evaluate, lab(positive, category=[]), sertraline())  # uncategorised lab feeds


def test_one_observation_can_be_both_a_report_and_a_lab_result(evaluate: Evaluate) -> None:
    # an uncategorised result is read both ways; the two readings must not share a match cache
    uncategorised = lab({"valueString": "POSITIVE"}, category=None)
    del uncategorised["category"]
    assert interacts(evaluate, uncategorised, sertraline())
