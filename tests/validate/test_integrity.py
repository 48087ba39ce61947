"""Check 3: references resolve, identities are unique, contained resources are used, urns are well formed."""

from __future__ import annotations

import copy
from typing import Any

from tests.factories import bundle, kratom, patient, rx, sertraline
from tests.validate.helpers import Check, codes, only

P_URN = "urn:uuid:0b6a9c1e-2f0e-4c1a-9a53-5f7c1f0e2d11"
M_URN = "urn:uuid:6e1c3b7a-8d4f-4e2b-a1c9-0f3e5d7b9a21"
MEDICATION = {"resourceType": "Medication", "id": "m1", "code": rx("197696", "Kratom")}


def urn_bundle(*pairs: tuple[str, dict[str, Any]], btype: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [{"fullUrl": url, "resource": copy.deepcopy(r)} for url, r in pairs],
    }


def test_every_reference_form_resolves(check: Check) -> None:
    contained = sertraline("s2", medicationReference={"reference": "#m"}, contained=[MEDICATION | {"id": "m"}])
    del contained["medicationCodeableConcept"]
    doc = urn_bundle(
        (P_URN, patient()),
        (M_URN, MEDICATION),
        ("urn:uuid:1d7e6f00-3b1a-4c55-8a0e-2f7a9b1c3d41", kratom(subject=P_URN)),
        ("http://example.org/fhir/MedicationRequest/s1", sertraline(medicationReference={"reference": M_URN})),
        ("http://example.org/fhir/MedicationRequest/s2", contained),
        (
            "http://example.org/fhir/MedicationRequest/s3",
            sertraline("s3", subject="http://example.org/fhir/Patient/p1/_history/2"),
        ),
    )
    del doc["entry"][3]["resource"]["medicationCodeableConcept"]
    assert check(doc=doc) == []


def test_unresolved_practitioner_is_a_warning(check: Check) -> None:
    d = only(check(patient(), sertraline(requester={"reference": "Practitioner/dr1"})), "CPR-V201")
    assert d.path == "Bundle.entry[1].resource.requester" and not d.is_error
    assert "'Practitioner/dr1' does not resolve inside the input" in d.message


def test_unresolved_medication_reference_is_an_error(check: Check) -> None:
    r = sertraline(medicationReference={"reference": "Medication/m9"})
    del r["medicationCodeableConcept"]
    d = only(check(patient(), r), "CPR-V202")
    assert d.is_error and d.path == "Bundle.entry[1].resource.medicationReference"
    assert "cannot tell which medication" in d.message


def test_medication_reference_with_only_a_display_is_an_error(check: Check) -> None:
    r = sertraline(medicationReference={"display": "kratom capsules"})
    del r["medicationCodeableConcept"]
    d = only(check(patient(), r), "CPR-V202")
    assert "names no reference" in d.message


def test_r5_medication_reference_is_checked_too(check: Check) -> None:
    r5 = kratom(r5=True, status="recorded")
    r5["medication"] = {"reference": {"reference": "Medication/m9"}}
    d = only(check(patient(), r5), "CPR-V202")
    assert d.path == "Bundle.entry[1].resource.medication.reference"


def test_duplicate_full_url(check: Check) -> None:
    doc = urn_bundle((P_URN, patient()), (P_URN, patient("p2")))
    d = only(check(doc=doc), "CPR-V203")
    assert d.path == "Bundle.entry[1].fullUrl" and "also used by Bundle.entry[0].resource" in d.message


def test_duplicate_type_and_id(check: Check) -> None:
    d = only(check(patient(), kratom(), kratom(text="kratom tea")), "CPR-V204")
    assert d.path == "Bundle.entry[2].resource.id"
    assert "MedicationStatement/k1 is also at Bundle.entry[1].resource" in d.message


def test_history_bundle_may_repeat_a_resource(check: Check) -> None:
    doc = bundle(patient(), kratom(), kratom(status="completed"), btype="history")
    assert "CPR-V204" not in codes(check(doc=doc))


def test_versions_of_one_resource_are_not_duplicates(check: Check) -> None:
    v1, v2 = kratom(meta={"versionId": "1"}), kratom(meta={"versionId": "2"})
    assert "CPR-V204" not in codes(check(patient(), v1, v2))


def test_contained_resource_nobody_references(check: Check) -> None:
    r = sertraline(contained=[MEDICATION | {"id": "orphan"}])
    d = only(check(patient(), r), "CPR-V205")
    assert d.path == "Bundle.entry[1].resource.contained[0]" and d.is_error
    assert "'#orphan' is not referenced" in d.message


def test_contained_resource_referring_to_its_container_is_used(check: Check) -> None:
    prov = {
        "resourceType": "Provenance",
        "id": "pv",
        "target": [{"reference": "#"}],
        "recorded": "2026-01-01T00:00:00Z",
    }
    prov |= {"agent": [{"who": {"reference": "Patient/p1"}}]}
    r = sertraline(contained=[prov])
    assert "CPR-V205" not in codes(check(patient(), r))


def test_urn_uuid_that_is_not_a_uuid(check: Check) -> None:
    doc = urn_bundle(("urn:uuid:patient-1", patient()), (M_URN.upper().replace("URN:UUID:", "urn:uuid:"), MEDICATION))
    found = [d for d in check(doc=doc) if d.code == "CPR-V206"]
    assert [d.path for d in found] == ["Bundle.entry[0].fullUrl", "Bundle.entry[1].fullUrl"]
    assert "is not a UUID" in found[0].message and "upper-case" in found[1].message


def test_reference_with_a_malformed_urn(check: Check) -> None:
    d = only(check(patient(), sertraline(requester={"reference": "urn:uuid:dr-who"})), "CPR-V206")
    assert d.path == "Bundle.entry[1].resource.requester.reference"


def test_subject_is_a_patient_not_in_the_bundle(check: Check) -> None:
    found = check(patient(), kratom(subject="Patient/p2"))
    d = only(found, "CPR-V207")
    assert d.path == "Bundle.entry[1].resource.subject" and not d.is_error
    assert "CPR-V201" not in codes(found)


def test_contained_reference_to_nothing(check: Check) -> None:
    r = sertraline(medicationReference={"reference": "#nope"})
    del r["medicationCodeableConcept"]
    d = only(check(patient(), r), "CPR-V208")
    assert d.path == "Bundle.entry[1].resource.medicationReference" and "'#nope'" in d.message


def test_full_url_naming_another_resource(check: Check) -> None:
    doc = urn_bundle(("http://example.org/fhir/Patient/p9", patient()))
    d = only(check(doc=doc), "CPR-V209")
    assert d.path == "Bundle.entry[0].fullUrl" and "names Patient/p9 but the resource is Patient/p1" in d.message


def test_conditional_references_belong_to_transactions(check: Check) -> None:
    r = sertraline(requester={"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1"})
    assert codes(check(doc=bundle(patient(), r, btype="transaction"))) == []
    d = only(check(patient(), r), "CPR-V201")
    assert "conditional (search) reference" in d.message


def test_a_lone_resource_is_not_a_bundle(check: Check) -> None:
    alone = sertraline(requester={"reference": "Practitioner/dr1"})
    assert check(doc=alone) == []  # its patient and prescriber are elsewhere by design
    r = sertraline(medicationReference={"reference": "Medication/m9"})
    del r["medicationCodeableConcept"]
    assert codes(check(doc=r)) == ["CPR-V202"]  # but the engine cannot evaluate it alone
