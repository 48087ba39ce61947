"""Every prefetch key state, and the fallback fetch from fhirServer with its failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules.service.errors import Problems
from careplan_rules.service.prefetch import PrefetchState, PrefetchTemplate, classify
from tests.factories import bundle, kratom, med_request, med_statement, patient, sertraline
from tests.service.helpers import FHIR, PV, FhirStub, assert_valid_response, running, start

Body = Callable[..., dict[str, Any]]
MS = PrefetchTemplate("medicationStatement", "MedicationStatement", "MedicationStatement?patient={{context.patientId}}")
PT = PrefetchTemplate("patient", "Patient", "Patient/{{context.patientId}}")
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}


@pytest.mark.parametrize(
    ("prefetch", "state", "count"),
    [
        ({}, PrefetchState.ABSENT, 0),
        ({"medicationStatement": None}, PrefetchState.NULL, 0),
        ({"medicationStatement": bundle(btype="searchset")}, PrefetchState.EMPTY, 0),
        ({"medicationStatement": {"resourceType": "Bundle", "type": "searchset"}}, PrefetchState.EMPTY, 0),
        ({"medicationStatement": bundle(kratom(), btype="searchset")}, PrefetchState.BUNDLE, 1),
        ({"medicationStatement": OUTCOME}, PrefetchState.OUTCOME, 0),
        ({"medicationStatement": kratom()}, PrefetchState.RESOURCE, 1),
    ],
)
def test_prefetch_states(prefetch: dict[str, Any], state: PrefetchState, count: int) -> None:
    item = classify(MS, prefetch, Problems())
    assert item.state is state and len(item.resources) == count
    assert item.needs_fetch == (state in (PrefetchState.ABSENT, PrefetchState.OUTCOME))


def test_paged_bundle_and_outcome_entries() -> None:
    paged = bundle(kratom(), btype="searchset")
    paged["link"] = [{"relation": "self", "url": f"{FHIR}/x"}, {"relation": "next", "url": f"{FHIR}/x?page=2"}]
    item = classify(MS, {"medicationStatement": paged}, Problems())
    assert item.state is PrefetchState.PAGED and item.next_url == f"{FHIR}/x?page=2"
    warning = bundle(
        kratom(),
        {"resourceType": "OperationOutcome", "id": "w", "issue": [{"severity": "warning", "code": "informational"}]},
    )
    assert classify(MS, {"medicationStatement": warning}, Problems()).state is PrefetchState.BUNDLE
    failed = bundle(
        kratom(),
        {"resourceType": "OperationOutcome", "id": "e", "issue": [{"severity": "error", "code": "too-costly"}]},
    )
    assert classify(MS, {"medicationStatement": failed}, Problems()).state is PrefetchState.OUTCOME


def test_a_read_key_holds_one_resource() -> None:
    assert classify(PT, {"patient": patient()}, Problems()).state is PrefetchState.RESOURCE
    problems = Problems()
    classify(PT, {"patient": kratom()}, problems)
    assert problems.items and problems.items[0].expression == ("prefetch.patient",)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("kratom", "entry[1] is not an object"),
        ({"resource": "kratom"}, "entry[1].resource is not a FHIR resource"),
        ({"resource": {"id": "k9", "medicationCodeableConcept": {"text": "kratom"}}}, "entry[1].resource is not"),
        ({"resource": {"resourceType": 5}}, "entry[1].resource is not"),
        (None, "entry"),  # not a list: under a declared key "Bundle.entry must be a list"
    ],
)
def test_an_entry_that_is_not_a_resource_is_a_400_never_skipped(
    tmp_path: Path, pv_body: Body, entry: Any, why: str
) -> None:
    searchset = bundle(sertraline(), btype="searchset")
    if entry is None:
        searchset["entry"] = {"0": searchset["entry"][0]}
    else:
        searchset["entry"].append(entry)
    for key in ("medicationStatement", "notDeclaredByTheService"):
        body = pv_body(patient(), kratom())
        body["prefetch"][key] = searchset
        with running(start(tmp_path)) as c:
            response = c.post(f"/cds-services/{PV}", json=body)
        assert response.status_code == 400, response.text
        [issue] = response.json()["issue"]
        assert issue["code"] == "structure" and why in issue["details"]["text"]
        assert issue["expression"][0] in (f"prefetch.{key}", f"prefetch.{key}.entry")


def test_a_link_element_of_another_shape_is_no_next_page() -> None:
    searchset = bundle(kratom(), btype="searchset")
    searchset["link"] = 5
    item = classify(MS, {"medicationStatement": searchset}, Problems())
    assert item.state is PrefetchState.BUNDLE and item.next_url is None


def test_an_entry_without_a_resource_is_skipped_as_the_reader_skips_it() -> None:
    searchset = bundle(kratom(), btype="searchset")
    searchset["entry"].append({"fullUrl": f"{FHIR}/MedicationStatement/gone", "request": {"method": "DELETE"}})
    problems = Problems()
    item = classify(MS, {"medicationStatement": searchset}, problems)
    assert item.state is PrefetchState.BUNDLE and len(item.resources) == 1 and not problems.items


def test_a_fetched_bundle_with_an_entry_that_is_not_a_resource_is_a_412(tmp_path: Path, pv_body: Body) -> None:
    import httpx

    class Malformed(FhirStub):
        def handle(self, request: httpx.Request) -> httpx.Response:
            page = super().handle(request).json()
            page["entry"].append({"resource": {"id": "no-type"}})
            return httpx.Response(200, json=page)

    body = with_key(pv_body(patient(), sertraline()), "medicationStatement")
    response = call(tmp_path, Malformed([kratom()]), body)
    assert response.status_code == 412, response.text
    [issue] = response.json()["issue"]
    assert issue["code"] == "structure" and "entry[1].resource is not a FHIR resource" in issue["details"]["text"]


def with_key(body: dict[str, Any], key: str, value: Any = ...) -> dict[str, Any]:
    if value is ...:
        del body["prefetch"][key]
    else:
        body["prefetch"][key] = value
    body["fhirServer"] = FHIR
    body["fhirAuthorization"] = {
        "access_token": "fhir-token-123",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "careplan-rules",
        "patient": "p1",
    }
    return body


def call(tmp_path: Path, stub: FhirStub, body: dict[str, Any], **settings: Any) -> Any:
    with running(start(tmp_path, stub=stub, **settings)) as c:
        return c.post(f"/cds-services/{PV}", json=body)


def finding_rules(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())
    return {
        c["extension"]["org.careplan-rules.finding"]["rule"]
        for c in response.json()["cards"]
        if "org.careplan-rules.finding" in c.get("extension", {})
    }


def test_absent_key_is_fetched_with_the_bearer_token(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([kratom(), med_statement("other", "kratom", subject="Patient/p2")])
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement")
    assert "kratom-serotonergic" in finding_rules(call(tmp_path, stub, body))
    assert stub.calls("MedicationStatement") == [f"{FHIR}/MedicationStatement?patient=p1"]
    assert all(r.headers["authorization"] == "Bearer fhir-token-123" for r in stub.requests)
    assert stub.calls() == stub.calls("MedicationStatement")  # prefetched keys are not fetched again


def test_operation_outcome_key_is_fetched(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([kratom()])
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement", OUTCOME)
    assert "kratom-serotonergic" in finding_rules(call(tmp_path, stub, body))


def test_null_and_empty_mean_no_data_and_are_not_fetched(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([kratom()])
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement", None)
    body["prefetch"]["patient"] = None
    assert not {"kratom-use", "kratom-serotonergic"} & finding_rules(call(tmp_path, stub, body))
    assert stub.calls() == []


def test_next_pages_of_a_prefetched_bundle_are_fetched(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([med_statement(f"m{i}", "Lisinopril 10 mg") for i in range(4)] + [kratom()], page_size=2)
    first = bundle(med_statement("m0", "Lisinopril 10 mg"), med_statement("m1", "Lisinopril 10 mg"), btype="searchset")
    first["link"] = [{"relation": "next", "url": f"{FHIR}/MedicationStatement?patient=p1&_page=1"}]
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement", first)
    rules = finding_rules(call(tmp_path, stub, body))
    assert "kratom-serotonergic" in rules  # the kratom statement is on page 3
    assert len(stub.calls("MedicationStatement")) == 2


def test_fetched_searches_follow_paging(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([med_statement(f"m{i}", "Lisinopril 10 mg") for i in range(5)] + [kratom()], page_size=2)
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement")
    assert "kratom-serotonergic" in finding_rules(call(tmp_path, stub, body))
    assert len(stub.calls("MedicationStatement")) == 3


def test_paging_limit_is_a_412_not_a_truncation(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([med_statement(f"m{i}", "Lisinopril 10 mg") for i in range(9)] + [kratom()], page_size=2)
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement")
    response = call(tmp_path, stub, body, fhir={"max_pages": 3})
    assert response.status_code == 412
    assert "more than 3 pages" in response.json()["issue"][0]["details"]["text"]


@pytest.mark.parametrize(
    ("failure", "code", "text"),
    [
        ("timeout", "timeout", "did not answer within"),
        (401, "security", "refused the access token"),
        (403, "security", "refused the access token"),
        (500, "exception", "HTTP 500"),
        (404, "not-found", "HTTP 404"),
        (302, "exception", "redirect (HTTP 302); not followed"),
    ],
)
def test_fetch_failures_are_412_with_an_outcome(
    tmp_path: Path, pv_body: Body, failure: int | str, code: str, text: str
) -> None:
    stub = FhirStub([kratom()], fail={"MedicationStatement": failure})
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement")
    response = call(tmp_path, stub, body)
    assert response.status_code == 412
    [issue] = response.json()["issue"]
    assert issue["code"] == code and text in issue["details"]["text"]
    assert issue["expression"] == ["prefetch.medicationStatement"]
    assert "fhir-token-123" not in response.text and "p1" not in issue["details"]["text"]


def test_wrong_token_is_a_412(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([kratom()], token="another-token")
    response = call(tmp_path, stub, with_key(pv_body(patient(), sertraline()), "medicationStatement"))
    assert response.status_code == 412 and response.json()["issue"][0]["code"] == "security"


def test_a_missing_patient_read_is_no_data(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([])
    response = call(tmp_path, stub, with_key(pv_body(patient(), kratom(), sertraline()), "patient"))
    assert "kratom-serotonergic" in finding_rules(response)
    assert stub.calls("Patient") == [f"{FHIR}/Patient/p1"]


def test_next_links_to_other_servers_are_not_followed(tmp_path: Path, pv_body: Body) -> None:
    first = bundle(med_statement("m0", "Lisinopril 10 mg"), btype="searchset")
    first["link"] = [{"relation": "next", "url": "https://attacker.example/steal?page=2"}]
    stub = FhirStub([kratom()])
    response = call(tmp_path, stub, with_key(pv_body(patient(), sertraline()), "medicationStatement", first))
    assert response.status_code == 412
    assert "outside" in response.json()["issue"][0]["details"]["text"]
    assert not any("attacker" in str(r.url) for r in stub.requests)


def test_fhir_server_allowlist_and_https(tmp_path: Path, pv_body: Body) -> None:
    stub = FhirStub([kratom()])
    body = with_key(pv_body(patient(), sertraline()), "medicationStatement")
    response = call(tmp_path, stub, body, fhir={"allowed_servers": ["https://other.example.org/fhir"]})
    assert response.status_code == 412 and "allowed_servers" in response.text
    assert stub.requests == []


def test_fetch_budget_bounds_the_whole_call(tmp_path: Path, pv_body: Body) -> None:
    import asyncio

    import httpx

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle(btype="searchset"))

    from careplan_rules.service.app import create_app
    from tests.service.helpers import make_config

    config = make_config(tmp_path, auth={"insecure_no_auth": True}, fhir={"budget_seconds": 0.2})
    app = create_app(config, http_transport=httpx.MockTransport(slow))
    with running(app) as c:
        response = c.post(f"/cds-services/{PV}", json=with_key(pv_body(patient(), sertraline()), "medicationStatement"))
    assert response.status_code == 412 and response.json()["issue"][0]["code"] == "timeout"


def test_referenced_medications_are_fetched(tmp_path: Path, pv_body: Body) -> None:
    order = med_request("s1", "x")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/sert"}
    medication = {
        "resourceType": "Medication",
        "id": "sert",
        "code": {
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "36437", "display": "sertraline"}
            ]
        },
    }
    stub = FhirStub([medication])
    body = with_key(pv_body(patient(), kratom(), order), "observation", bundle(btype="searchset"))
    assert "kratom-serotonergic" in finding_rules(call(tmp_path, stub, body))
    assert stub.calls("Medication") == [f"{FHIR}/Medication?_id=sert"]
    del body["fhirServer"], body["fhirAuthorization"]
    with running(start(tmp_path)) as c:
        response = c.post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 412 and "Medication" in response.json()["issue"][0]["details"]["text"]
