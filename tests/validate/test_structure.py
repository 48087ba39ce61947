"""Check 1: fhir.resources' validation, one diagnostic per problem, and one sentence per release problem."""

from __future__ import annotations

from tests.factories import kratom, med_request, med_statement, patient, rx, sertraline
from tests.validate.helpers import Check, codes, only


def test_valid_bundle_has_no_diagnostics(check: Check) -> None:
    assert check(patient(), kratom(), sertraline()) == []


def test_impossible_date_is_reported_with_its_fhir_path(check: Check) -> None:
    d = only(check(patient(), kratom(effective={"start": "2026-02-30"})), "CPR-V001")
    assert d.path == "Bundle.entry[1].resource.effectivePeriod.start"
    assert d.is_error and "'2026-02-30'" in d.message
    assert d.render().startswith("in.json: error CPR-V001: Bundle.entry[1].resource.effectivePeriod.start: ")


def test_datetime_without_zone_says_what_is_missing(check: Check) -> None:
    d = only(check(patient(), sertraline(authoredOn="2026-04-01T10:00:00")), "CPR-V001")
    assert d.path == "Bundle.entry[1].resource.authoredOn"
    assert "must have a time zone" in d.message and "'2026-04-01T10:00:00'" in d.message


def test_unknown_element_and_missing_required_element(check: Check) -> None:
    bad = sertraline(stauts="active")
    del bad["status"]
    found = check(patient(), bad)
    paths = {d.path: d.message for d in found if d.code == "CPR-V001"}
    assert "unknown element" in paths["Bundle.entry[1].resource.stauts"]
    assert "required element is missing" in paths["Bundle.entry[1].resource.status"]


def test_two_choices_of_one_element_are_named(check: Check) -> None:
    both = sertraline(medicationReference={"reference": "#m1"})
    d = only(check(patient(), both), "CPR-V001")
    assert d.path == "Bundle.entry[1].resource"
    assert "only one of medicationCodeableConcept, medicationReference" in d.message


def test_a_string_where_an_object_belongs_says_so(check: Check) -> None:
    d = only(check(patient(), kratom(subject="Patient/p1") | {"subject": "Patient/p1"}), "CPR-V001")
    assert d.path == "Bundle.entry[1].resource.subject"
    assert "expected a JSON object, got the string 'Patient/p1'" in d.message


def test_problems_beyond_ten_per_resource_are_counted(check: Check) -> None:
    noisy = kratom() | {f"bogus{i}": 1 for i in range(14)}
    found = [d for d in check(patient(), noisy) if d.code == "CPR-V001"]
    assert len(found) == 11 and "4 more problem(s) in this resource" in found[-1].message


def test_unknown_resource_type_suggests_the_right_name(check: Check) -> None:
    typo = kratom() | {"resourceType": "MedicationStatment"}
    d = only(check(patient(), typo), "CPR-V002")
    assert d.path == "Bundle.entry[1].resource"
    assert "'MedicationStatment' is not defined in FHIR R4" in d.message
    assert "did you mean 'MedicationStatement'?" in d.message


def test_unknown_contained_type_does_not_hide_other_problems(check: Check) -> None:
    r = sertraline(contained=[{"resourceType": "Medicine", "id": "m1"}], authoredOn="2026-13-01")
    found = check(patient(), r)
    assert only(found, "CPR-V002").path == "Bundle.entry[1].resource.contained[0]"
    assert only(found, "CPR-V001").path == "Bundle.entry[1].resource.authoredOn"


def test_r5_data_forced_as_r4_gets_one_sentence(check: Check) -> None:
    r5 = [med_statement(f"k{i}", "kratom", r5=True, status="recorded") for i in range(5)]
    found = check(patient(), *r5, fhir_version="R4")
    assert codes(found) == ["CPR-V003"]
    msg = found[0].message
    assert msg.startswith("Bundle.entry[1].resource: looks like FHIR R5 data, not R4")
    assert "MedicationStatement.medication (CodeableReference)" in msg
    assert "rerun with --fhir-version R5" in msg and "4 more resource(s)" in msg


def test_r4_data_forced_as_r5_names_the_first_difference(check: Check) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "Clinic", "telecom": [{"system": "phone", "value": "1"}]}
    found = check(patient(), org, kratom(), fhir_version="R5")
    d = only(found, "CPR-V003")
    assert "looks like FHIR R4 data, not R5" in d.message and "rerun with --fhir-version R4" in d.message
    assert "unknown element" not in " ".join(x.message for x in found)


def test_r5_data_is_read_as_r5_in_auto_mode(check: Check) -> None:
    r5 = med_statement("k1", "kratom", r5=True, status="recorded")
    assert check(patient(), r5) == []


def test_r4_and_r5_in_one_input_is_one_error(check: Check) -> None:
    found = check(patient(), kratom(), med_statement("k2", "kratom", r5=True, status="recorded"))
    d = only(found, "CPR-V005")
    assert "R4 shape" in d.message and "R5 shape" in d.message and "--fhir-version" in d.message


def test_stu3_element_names_stu3(check: Check) -> None:
    stu3 = kratom() | {"taken": "y"}
    d = only(check(patient(), stu3), "CPR-V004")
    assert "looks like FHIR STU3 data" in d.message and "MedicationStatement.taken" in d.message
    assert "careplan-rules reads R4 and R5" in d.message


def test_dstu2_medication_order_names_dstu2_once(check: Check) -> None:
    orders = [
        {"resourceType": "MedicationOrder", "id": f"o{i}", "status": "active", "patient": {"reference": "Patient/p1"}}
        for i in range(3)
    ]
    found = check(patient(), *orders)
    d = only(found, "CPR-V004")
    assert "looks like FHIR DSTU2 data" in d.message and "MedicationOrder is a DSTU2" in d.message
    assert "2 more resource(s)" in d.message


def test_dstu2_element_names_dstu2(check: Check) -> None:
    old = med_statement("k1", rx("197696")) | {"wasNotTaken": False}
    d = only(check(patient(), old), "CPR-V004")
    assert "MedicationStatement.wasNotTaken is a DSTU2 element" in d.message


def test_bundle_shell_is_checked_too(check: Check) -> None:
    doc = {"resourceType": "Bundle", "id": "brenda_jackson", "type": "collection", "entry": [{"resource": patient()}]}
    d = only(check(doc=doc), "CPR-V001")
    assert d.path == "Bundle.id" and "an id may hold only letters" in d.message


def test_single_resource_and_array_inputs(check: Check) -> None:
    assert check(doc=med_request("r1", rx("197696"), subject="Patient/p1")) == []
    d = only(check(doc=[patient(), kratom(effective="2026-02-30")]), "CPR-V001")
    assert d.path == "[1].effectiveDateTime"
