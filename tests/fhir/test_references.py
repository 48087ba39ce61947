"""Every reference form resolves; medicationReference brings the Medication's ingredients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from careplan_rules.fhir.reader import read_any
from careplan_rules.fhir.references import ReferenceIndex
from tests.factories import RXNORM, bundle, fired, med_request, patient, rx


def index_of(data: dict[str, Any]) -> tuple[ReferenceIndex, Any]:
    doc = read_any(data)
    return ReferenceIndex(doc.entries), doc


def test_relative_absolute_urn_and_contained() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": rx("7804")}
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "http://srv/fhir/Medication/m1", "resource": med},
            {
                "fullUrl": "urn:uuid:5e1b9c1a-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "id": "pp"},
            },
        ],
    }
    index, _doc = index_of(data)
    assert index.resolve({"reference": "Medication/m1"}).ref == "Medication/m1"  # type: ignore[union-attr]
    assert index.resolve("http://srv/fhir/Medication/m1/_history/3").ref == "Medication/m1"  # type: ignore[union-attr]
    assert index.resolve("http://other-server/fhir/Medication/m1") is None  # another server's resource
    assert index.resolve("urn:uuid:5e1b9c1a-0000-4000-8000-000000000001").ref == "Patient/pp"  # type: ignore[union-attr]
    container = {"resourceType": "MedicationRequest", "contained": [{"resourceType": "Medication", "id": "x"}]}
    hit = index.resolve("#x", container=container)
    assert hit is not None and hit.contained and hit.ref == "#x"
    assert index.resolve("#nope", container=container) is None
    assert index.target_type({"reference": "urn:uuid:unknown", "type": "Practitioner"}) == "Practitioner"


def test_resource_without_id_gets_a_stable_synthetic_ref() -> None:
    data = bundle({"resourceType": "Patient", "gender": "male"})
    one, _ = index_of(data)
    two, _ = index_of(data)
    ref1 = one.ref_of(one.entries[0])
    assert ref1.startswith("Patient/anon-") and ref1 == two.ref_of(two.entries[0])


def test_contained_medication_reference(evaluate: Callable[..., Any]) -> None:
    ms = {
        "resourceType": "MedicationStatement",
        "id": "k1",
        "status": "active",
        "contained": [{"resourceType": "Medication", "id": "kr", "code": {"text": "Kratom extract"}}],
        "medicationReference": {"reference": "#kr"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-05-01",
    }
    result = evaluate(patient(), ms)
    assert "kratom-use" in fired(result)
    ev = result.finding("kratom-use").evidence[0]
    assert (ev.matched_by, ev.matched, ev.resource) == ("text", "kratom", "MedicationStatement/k1")


def test_bundled_medication_with_ingredient_list_and_urn_uuid(evaluate: Callable[..., Any]) -> None:
    pid, mid = "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001", "urn:uuid:aaaaaaaa-0000-4000-8000-000000000002"
    data = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": pid, "resource": {"resourceType": "Patient"}},
            {
                "fullUrl": mid,
                "resource": {
                    "resourceType": "Medication",
                    "code": {"text": "Compounded capsule"},
                    "ingredient": [
                        {
                            "itemCodeableConcept": {
                                "coding": [{"system": RXNORM, "code": "36437", "display": "sertraline"}]
                            }
                        },
                        {"itemCodeableConcept": {"text": "kratom leaf"}},
                    ],
                },
            },
            {
                "fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "MedicationStatement",
                    "status": "active",
                    "medicationReference": {"reference": mid},
                    "subject": {"reference": pid},
                    "effectiveDateTime": "2026-05-01",
                },
            },
        ],
    }
    result = evaluate(data)
    assert result.patient == "Patient/aaaaaaaa-0000-4000-8000-000000000001"
    assert {"kratom-use", "kratom-serotonergic"} <= fired(result)
    sero = result.finding("kratom-serotonergic")
    assert any(e.matched_by == "ingredient-code" and e.criterion == "serotonergic" for e in sero.evidence)


def test_unresolvable_medication_reference_is_a_loud_error(evaluate: Callable[..., Any], engine: Any) -> None:
    req = med_request("r1", "x")
    del req["medicationCodeableConcept"]
    req["medicationReference"] = {"reference": "Medication/missing", "display": "Oxycodone 5 mg"}
    results = engine.evaluate(bundle(patient(), req), now="2026-06-01", on_error="collect")
    assert not results[0].ok
    assert results[0].errors[0].code == "CPR-F030"
    assert "cannot be resolved" in results[0].errors[0].message


def test_unresolved_reference_on_an_entered_in_error_record_is_not_an_error(evaluate: Callable[..., Any]) -> None:
    req = med_request("r1", "x", status="entered-in-error")
    del req["medicationCodeableConcept"]
    req["medicationReference"] = {"reference": "Medication/missing"}
    assert fired(evaluate(patient(), req)) == set()


_URL_PARTS = st.sampled_from(
    [
        "https:",
        "",
        "x",
        "fhir",
        "Patient",
        "Observation",
        "observation",
        "p1",
        "o-1.2",
        "_history",
        "3",
        "a b",
        "\n",
        "é",
    ]
)


@given(st.lists(st.lists(_URL_PARTS, min_size=0, max_size=7), min_size=1, max_size=4))
def test_the_base_of_a_full_url_is_what_the_restful_pattern_says(urls: list[list[str]]) -> None:
    from careplan_rules.fhir.references import _REST, ReferenceIndex, _without_history

    index = ReferenceIndex([])  # one index for all: what it remembers of one URL must not leak into another
    for parts in urls:
        url = "/".join(parts)
        m = _REST.match(_without_history(url))
        assert index._base_of(url) == (m["base"] if m else None)
