"""Check 4: valid FHIR that the rules would still misread or miss, each warning with a stable code."""

from __future__ import annotations

from tests.factories import RXNORM, kratom, med_request, med_statement, patient, rx, sertraline
from tests.validate.helpers import Check, codes, only


def test_medication_without_code_or_text(check: Check) -> None:
    blank = med_statement("k1", {"coding": [{"system": RXNORM}]})
    d = only(check(patient(), blank), "CPR-V301")
    assert d.path == "Bundle.entry[1].resource.medicationCodeableConcept" and not d.is_error


def test_bundled_medication_without_code_text_or_ingredient(check: Check) -> None:
    med = {"resourceType": "Medication", "id": "m1", "form": {"text": "capsule"}}
    r = sertraline(medicationReference={"reference": "Medication/m1"})
    del r["medicationCodeableConcept"]
    d = only(check(patient(), med, r), "CPR-V301")
    assert d.path == "Bundle.entry[1].resource.code"


def test_compounded_medication_is_named_by_its_ingredients(check: Check) -> None:
    med = {"resourceType": "Medication", "id": "m1", "ingredient": [{"itemCodeableConcept": rx("1049621")}]}
    r = sertraline(medicationReference={"reference": "#m1"}, contained=[med])
    del r["medicationCodeableConcept"]
    assert check(patient(), r) == []


def test_medication_record_without_status(check: Check) -> None:
    r = kratom()
    del r["status"]
    found = check(patient(), r)
    d = only(found, "CPR-V302")
    assert d.path == "Bundle.entry[1].resource.status" and "possibly current" in d.message
    assert only(found, "CPR-V001").path == d.path  # also invalid FHIR: status is required


def test_medication_record_without_subject(check: Check) -> None:
    r = med_request("r1", rx("197696"))
    del r["subject"]
    d = only(check(patient(), r), "CPR-V303")
    assert d.path == "Bundle.entry[1].resource.subject"


def test_medication_record_without_any_date(check: Check) -> None:
    d = only(check(patient(), kratom(effective=None)), "CPR-V304")
    assert d.path == "Bundle.entry[1].resource" and "effectiveDateTime" in d.message
    timed = med_request("r1", rx("197696"), authored=None)
    timed["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"start": "2026-01-01"}}}}]
    assert "CPR-V304" not in codes(check(patient(), timed))


def test_period_that_ends_before_it_starts(check: Check) -> None:
    r = kratom(effective={"start": "2026-03-01", "end": "2025-12-31"})
    d = only(check(patient(), r), "CPR-V305")
    assert d.path == "Bundle.entry[1].resource.effectivePeriod" and "invariant per-1" in d.message


def test_period_order_respects_zones_and_precision(check: Check) -> None:
    fine = [
        {"start": "2026-03-01T10:00:00+02:00", "end": "2026-03-01T09:30:00Z"},  # 08:00Z to 09:30Z
        {"start": "2026-03-01T10:00:00Z", "end": "2026-03"},  # the end month contains the start
    ]
    for period in fine:
        assert "CPR-V305" not in codes(check(patient(), kratom(effective=period))), period
    wrong = {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00+05:00"}  # ends 06:00Z
    assert "CPR-V305" in codes(check(patient(), kratom(effective=wrong)))


def test_past_event_dated_after_now(check: Check) -> None:
    found = check(patient(birth="2031-01-01"), kratom(effective="2026-07-01"), now="2026-06-01T12:00:00Z")
    paths = [d.path for d in found if d.code == "CPR-V306"]
    assert paths == ["Bundle.entry[0].resource.birthDate", "Bundle.entry[1].resource.effectiveDateTime"]


def test_planned_dates_may_lie_in_the_future(check: Check) -> None:
    r = sertraline(dispenseRequest={"validityPeriod": {"start": "2026-05-01", "end": "2027-05-01"}})
    assert check(patient(), r, now="2026-06-01T12:00:00Z") == []


def test_today_in_another_zone_is_not_the_future(check: Check) -> None:
    r = kratom(effective="2026-06-01T20:00:00+09:00")  # 11:00Z, before now
    assert "CPR-V306" not in codes(check(patient(), r, now="2026-06-01T12:00:00Z"))


def test_coding_with_a_code_but_no_system(check: Check) -> None:
    r = sertraline(medicationCodeableConcept={"coding": [{"code": "328670", "display": "sertraline"}]})
    d = only(check(patient(), r), "CPR-V307")
    assert d.path == "Bundle.entry[1].resource.medicationCodeableConcept.coding[0]"
    assert "'328670' has no system" in d.message


def test_more_than_one_patient_in_a_bundle(check: Check) -> None:
    d = only(check(patient("p1"), patient("p2"), kratom(subject="Patient/p2")), "CPR-V308")
    assert d.severity.label == "info" and d.path == "Bundle" and "2 patients" in d.message


def test_one_patient_named_by_reference_only_is_fine(check: Check) -> None:
    assert "CPR-V308" not in codes(check(kratom(), sertraline()))


def test_any_shape_is_reported_never_a_crash(check: Check) -> None:
    """Shapes the later checks read before structure has refused them (found by mutating the
    bundled examples at random; each made `validate` fail with TypeError)."""
    shapes = [
        med_statement("k1", {"coding": 5}),
        sertraline(dosageInstruction=2.5),
        {"resourceType": "Medication", "id": "m1", "ingredient": 3},
        sertraline(contained=True),
        sertraline(reasonReference=[{"reference": {"reference": "Condition/c1"}}], contained=[]),
    ]
    for resource in shapes:
        found = check(patient(), resource)
        assert any(d.is_error for d in found), resource
