"""Where each NDJSON line goes: patient, shared index, deferred, skipped, or an error."""

from __future__ import annotations

import json

import pytest

from careplan_rules.screen.classify import (
    BLANK,
    DEFERRED,
    ERROR,
    RESOURCE,
    SHARED,
    SKIPPED,
    classify_line,
    resolve_provenance,
)
from tests.factories import kratom, med_request, patient

WANTED = frozenset({"MedicationStatement", "MedicationRequest", "Provenance", "Medication"})


def line(resource: object) -> bytes:
    return json.dumps(resource).encode() + b"\n"


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ({"reference": "Patient/p1"}, "Patient/p1"),
        ({"reference": "https://ehr.example.org/fhir/Patient/p1/_history/3"}, "Patient/p1"),
        ({"reference": "urn:uuid:1234", "type": "Patient"}, "urn:uuid:1234"),
    ],
)
def test_a_resource_goes_to_its_patient(subject: dict[str, str], key: str) -> None:
    r = kratom("k1")
    r["subject"] = subject
    c = classify_line(line(r), WANTED, "MS.ndjson", 7)
    assert (c.kind, c.key, c.ref) == (RESOURCE, key, "MedicationStatement/k1")


def test_patient_fields_other_than_subject_are_read() -> None:
    claim = {"resourceType": "MedicationRequest", "id": "x", "patient": {"reference": "Patient/p2"}}
    assert classify_line(line(claim), WANTED, "f", 1).key == "Patient/p2"


def test_a_patient_is_its_own_key() -> None:
    c = classify_line(line(patient("p9")), WANTED, "Patient.ndjson", 1)
    assert (c.kind, c.key) == (RESOURCE, "Patient/p9")


def test_shared_and_unread_types() -> None:
    med = {"resourceType": "Medication", "id": "m1"}
    assert (classify_line(line(med), WANTED, "f", 1).kind, classify_line(line(med), WANTED, "f", 1).ref) == (
        SHARED,
        "Medication/m1",
    )
    claim = {"resourceType": "Claim", "id": "c1"}  # no patient needed: no rule reads it
    assert classify_line(line(claim), WANTED, "f", 1).kind == SKIPPED
    assert classify_line(b"  \r\n", WANTED, "f", 1).kind == BLANK


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b'{"resourceType": "Patient", "id": ', "CPR-F005", "malformed JSON"),
        (b"[1, 2]", "CPR-F006", "one FHIR resource"),
        (b'{"id": "x"}', "CPR-F006", "no 'resourceType'"),
        (b'{"resourceType": "Bundle", "type": "collection"}', "CPR-P001", "Bundle"),
        (b'{"resourceType": "Patient", "id": "\xff"}', "CPR-F003", "not UTF-8"),
        (b'{"resourceType": "Patient", "id": "a\\tb"}', "CPR-F006", "control characters"),
    ],
)
def test_malformed_lines_are_errors_with_file_and_line(raw: bytes, code: str, message: str) -> None:
    c = classify_line(raw, WANTED, "Patient.ndjson", 12)
    assert c.kind == ERROR and c.error is not None
    assert (c.error.code, c.error.file, c.error.line) == (code, "Patient.ndjson", 12)
    assert message in c.error.message


def test_a_byte_order_mark_is_not_an_error() -> None:
    c = classify_line(b"\xef\xbb\xbf" + line(patient("p1")), WANTED, "f", 1)
    assert c.kind == RESOURCE


def test_a_resource_without_patient_is_an_error_not_dropped() -> None:
    r = med_request("m1", "ibuprofen")
    del r["subject"]
    c = classify_line(line(r), WANTED, "MR.ndjson", 3)
    assert c.kind == ERROR and c.error is not None
    assert (c.error.code, c.error.kind, c.error.resource) == ("CPR-F020", "no-patient", "MedicationRequest/m1")
    group = med_request("m2", "ibuprofen", subject="Group/g1")
    assert classify_line(line(group), WANTED, "MR.ndjson", 4).kind == ERROR


def test_provenances() -> None:
    direct = {"resourceType": "Provenance", "id": "a", "target": [{"reference": "Patient/p1"}]}
    assert classify_line(line(direct), WANTED, "f", 1).key == "Patient/p1"
    r5 = {"resourceType": "Provenance", "id": "b", "patient": {"reference": "Patient/p2"}, "target": []}
    assert classify_line(line(r5), WANTED, "f", 1).key == "Patient/p2"
    later = {
        "resourceType": "Provenance",
        "id": "c",
        "target": [{"reference": "MedicationStatement/k1"}, {"reference": "Patient/p3"}],
    }
    c = classify_line(line(later), WANTED, "f", 1)
    assert (c.kind, c.targets) == (DEFERRED, ("MedicationStatement/k1", "Patient/p3"))
    owners = {"MedicationStatement/k1": "Patient/p1"}
    assert resolve_provenance(c.targets, owners.get) == "Patient/p1"
    assert resolve_provenance(c.targets, {}.get) == "Patient/p3"
    assert resolve_provenance(("Condition/x",), {}.get) is None
    none = {"resourceType": "Provenance", "id": "d", "target": []}
    assert classify_line(line(none), WANTED, "f", 1).kind == ERROR
