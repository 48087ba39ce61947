"""Check 2: what fhir.resources describes in its models but lets through."""

from __future__ import annotations

from careplan_rules.validate.metadata import fields_of, resource_class
from tests.factories import kratom, med_statement, patient, sertraline
from tests.validate.helpers import Check, codes, only


def test_metadata_comes_from_the_models_for_any_resource_type() -> None:
    for release in ("R4", "R5"):
        encounter = resource_class(release, "Encounter")
        assert encounter is not None
        status = fields_of(encounter)["status"]
        assert status.codes is not None and "cancelled" in status.codes
        subject = fields_of(encounter)["subject"]
        assert subject.targets is not None and "Patient" in subject.targets
    assert resource_class("R4", "Coding") is None  # a data type, not a resource
    assert resource_class("R4", "DomainResource") is None


def test_status_outside_its_required_binding(check: Check) -> None:
    d = only(check(patient(), sertraline(status="bogus")), "CPR-V101")
    assert d.path == "Bundle.entry[1].resource.status" and d.is_error
    assert "'bogus' is not in the required value set (active, cancelled, completed" in d.message


def test_intent_outside_its_required_binding(check: Check) -> None:
    d = only(check(patient(), sertraline(intent="prescription")), "CPR-V101")
    assert d.path == "Bundle.entry[1].resource.intent"


def test_nested_codes_are_checked_generically(check: Check) -> None:
    p = patient() | {"telecom": [{"system": "pager-ish", "value": "1"}]}
    d = only(check(p), "CPR-V101")
    assert d.path == "Bundle.entry[0].resource.telecom[0].system"


def test_r5_binding_is_the_r5_value_set(check: Check) -> None:
    r5 = med_statement("k1", "kratom", r5=True, status="active")  # R4 status, not in R5's set
    found = check(patient(), r5, fhir_version="R5")
    d = only(found, "CPR-V101")
    assert d.path == "Bundle.entry[1].resource.status" and "recorded" in d.message


def test_reference_to_a_type_the_element_does_not_allow(check: Check) -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "kratom"}}
    d = only(check(patient(), med, kratom(subject="Medication/m1")), "CPR-V102")
    assert d.path == "Bundle.entry[2].resource.subject"
    assert "may reference Group or Patient, not Medication (Medication/m1)" in d.message


def test_reference_type_is_taken_from_the_resolved_resource(check: Check) -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "kratom"}}
    doc = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:0b6a9c1e-2f0e-4c1a-9a53-5f7c1f0e2d11", "resource": patient()},
            {"fullUrl": "urn:uuid:6e1c3b7a-8d4f-4e2b-a1c9-0f3e5d7b9a21", "resource": med},
            {"resource": kratom(subject="urn:uuid:6e1c3b7a-8d4f-4e2b-a1c9-0f3e5d7b9a21")},
        ],
    }
    assert only(check(doc=doc), "CPR-V102").path == "Bundle.entry[2].resource.subject"


def test_boolean_and_number_written_as_strings(check: Check) -> None:
    p = patient() | {"active": "true", "multipleBirthInteger": "2"}
    found = check(p)
    assert codes(found) == ["CPR-V103", "CPR-V103"]
    assert {d.path for d in found} == {
        "Bundle.entry[0].resource.active",
        "Bundle.entry[0].resource.multipleBirthInteger",
    }
    assert "needs a boolean here, not str 'true'" in found[0].message


def test_a_value_fhir_resources_rejects_is_reported_once(check: Check) -> None:
    p = patient() | {"multipleBirthInteger": "two"}
    assert codes(check(p)) == ["CPR-V001"]
