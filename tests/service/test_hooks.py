"""Hook calls: patient-view, order-select and order-sign with the spec's and the hook library's
examples; cards checked against the spec invariants on every response."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules.engine.backends.durable import import_problem
from careplan_rules.service.evaluators import engine_for as service_engine
from tests.factories import (
    RXNORM,
    bundle,
    external,
    kratom,
    med_request,
    patient,
    read_json,
    rx,
    sertraline,
)
from tests.service.helpers import (
    OSEL,
    OSIGN,
    PV,
    Client,
    FhirStub,
    assert_valid_response,
    make_config,
    running,
    start,
)

Body = Callable[..., dict[str, Any]]


def rules_of(response: dict[str, Any]) -> list[str]:
    """Rule ids of the finding cards of a response."""
    out = []
    for card in response["cards"]:
        finding = card.get("extension", {}).get("org.careplan-rules.finding")
        if finding:
            out.append(finding["rule"])
    return out


def test_patient_view_returns_a_card_per_finding(client: Client, pv_body: Body, pv_url: str) -> None:
    response = client.post(pv_url, json=pv_body())
    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid_response(body)
    assert {"kratom-serotonergic", "kratom-use", "missing-clinician-review"} <= set(rules_of(body))
    card = next(c for c in body["cards"] if "serotonergic" in c["extension"]["org.careplan-rules.finding"]["rule"])
    assert card["indicator"] == "warning"
    assert "MedicationStatement/k1" in card["detail"]  # the data it rests on
    actions = card["suggestions"][0]["actions"]
    assert [a["resource"]["resourceType"] for a in actions] == ["DetectedIssue", "CarePlan"]
    assert actions[1]["resource"]["status"] == "draft" and actions[1]["resource"]["intent"] == "proposal"
    assert card["selectionBehavior"] == "any"
    assert card["overrideReasons"][0]["system"] == "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
    assert card["source"]["url"].startswith("https://") and card["links"]


def test_no_finding_gives_an_empty_card_list(client: Client, pv_body: Body, pv_url: str) -> None:
    response = client.post(pv_url, json=pv_body(patient(), med_request("l1", "Lisinopril 10 mg tablet")))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_card_uuids_are_unique_per_call_and_stable_per_hook_instance(
    client: Client, pv_body: Body, pv_url: str
) -> None:
    first = client.post(pv_url, json=pv_body()).json()
    again = client.post(pv_url, json=pv_body()).json()
    other = client.post(pv_url, json=pv_body(hookInstance="a9a1f8f4-7f0b-4d6e-9a55-3c1e2d7b9f10")).json()
    uuids = [c["uuid"] for c in first["cards"]]
    assert uuids == [c["uuid"] for c in again["cards"]]  # a retried call is idempotent
    assert not set(uuids) & {c["uuid"] for c in other["cards"]}
    issue_ids = [c["extension"]["org.careplan-rules.finding"]["detectedIssue"] for c in first["cards"]]
    assert issue_ids == [c["extension"]["org.careplan-rules.finding"]["detectedIssue"] for c in other["cards"]]


def test_spec_patient_view_example_is_fetched_from_its_fhir_server(tmp_path: Path) -> None:
    request = read_json(external("cds-hooks", "spec-2.0.1", "request-patient-view-example.json"))
    stub = FhirStub(
        [
            {"resourceType": "Patient", "id": "1288992", "gender": "male", "birthDate": "1925-12-23"},
            kratom(subject="Patient/1288992"),
            sertraline(subject="Patient/1288992"),
        ],
        base=request["fhirServer"],
        token=request["fhirAuthorization"]["access_token"],
    )
    with running(start(tmp_path, stub=stub, fhir={"allow_http": True})) as c:
        response = c.post(f"/cds-services/{PV}", json=request)
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())
    assert "kratom-serotonergic" in rules_of(response.json())
    assert stub.calls("MedicationStatement") and stub.calls("Patient")


def test_spec_example_without_reachable_data_is_412(client: Client) -> None:
    request = read_json(external("cds-hooks", "spec-2.0.1", "request-patient-view-example.json"))
    response = client.post(f"/cds-services/{PV}", json=request)  # its fhirServer is plain http
    assert response.status_code == 412
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("not https" in i["details"]["text"] for i in outcome["issue"])
    assert {e for i in outcome["issue"] for e in i["expression"]} >= {"prefetch.medicationStatement"}


def test_missing_data_can_be_configured_to_a_card(tmp_path: Path, pv_body: Body) -> None:
    body = pv_body()
    del body["prefetch"]["observation"]
    with running(start(tmp_path, missing_data="card")) as c:
        response = c.post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 200
    cards = response.json()["cards"]
    assert_valid_response(response.json())
    assert "could not run" in cards[0]["summary"] and "observation" in cards[0]["detail"]
    assert "kratom-serotonergic" in rules_of(response.json())  # what could be evaluated still shows


def hook_library(hook: str, example: str, *, keep_medication_orders: bool = True) -> dict[str, Any]:
    data = read_json(external("cds-hooks", "hook-library-1.0.1", f"{hook}-context-examples.json"))
    context: dict[str, Any] = copy.deepcopy(data["examples"][example]["context"])
    if not keep_medication_orders:
        entries = context["draftOrders"]["entry"]
        context["draftOrders"]["entry"] = [e for e in entries if e["resource"]["resourceType"] != "MedicationRequest"]
    return context


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_hook_library_r4_orders_are_not_valid_r4_and_the_card_says_so(
    client: Client, full_prefetch: Any, hook: str
) -> None:
    """The library's "R4" MedicationRequests use STU3 dosage shapes; the rules refuse to guess.

    Its order is amoxicillin/clavulanate, which no rule reads (no card, see
    docs/semantics.md §4); the same order for sertraline must be read, and cannot be.
    """
    context = hook_library(hook, "Example (R4)")
    body = {"hook": hook, "hookInstance": "i-0", "context": context, "prefetch": full_prefetch(pid="1288992")}
    response = client.post(f"/cds-services/careplan-rules-{hook}", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    for entry in context["draftOrders"]["entry"]:
        if entry["resource"]["resourceType"] == "MedicationRequest":
            entry["resource"]["medicationCodeableConcept"] = {
                "coding": [{"system": RXNORM, "code": "312941", "display": "sertraline 50 MG Oral Tablet"}]
            }
    body["hookInstance"] = "i-0b"
    response = client.post(f"/cds-services/careplan-rules-{hook}", json=body)
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())
    [card] = response.json()["cards"]
    assert "could not run" in card["summary"] and "CPR-F010" in card["detail"] and "dosageInstruction" in card["detail"]


@pytest.mark.parametrize("example", ["Examples", "Example 2"])
def test_hook_library_patient_view_contexts(client: Client, full_prefetch: Any, example: str) -> None:
    context = hook_library("patient-view", example)
    body = {"hook": "patient-view", "hookInstance": "i-1", "context": context, "prefetch": full_prefetch(pid="1288992")}
    response = client.post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


def test_order_sign_evaluates_draft_orders_with_the_record(client: Client, full_prefetch: Any) -> None:
    context = hook_library("order-sign", "Example (R4)", keep_medication_orders=False)
    record = [patient("1288992"), kratom(subject="Patient/1288992")]
    draft = sertraline("draft-1", subject="Patient/1288992", status="draft", authored=None)
    context["draftOrders"]["entry"].append({"resource": draft})
    body = {
        "hook": "order-sign",
        "hookInstance": "i-2",
        "context": context,
        "prefetch": full_prefetch(*record, pid="1288992"),
    }
    response = client.post(f"/cds-services/{OSIGN}", json=body)
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())
    card = next(c for c in response.json()["cards"] if rules_of({"cards": [c]}) == ["kratom-serotonergic"])
    assert card["extension"]["org.careplan-rules.finding"]["draftOrders"] == ["MedicationRequest/draft-1"]


def test_order_sign_does_not_assume_draft_status(client: Client, full_prefetch: Any) -> None:
    """A revised order being re-signed may be active (hook library order-sign 1.1.0)."""
    context = hook_library("order-sign", "Example (R4)")
    revised = sertraline("rx-7", subject="Patient/1288992", status="active")
    context["draftOrders"] = bundle(revised)
    prefetch = full_prefetch(patient("1288992"), kratom(subject="Patient/1288992"), pid="1288992")
    old = copy.deepcopy(revised)
    old["status"] = "stopped"  # the record still holds the pre-revision copy
    prefetch["medicationRequest"] = bundle(old, btype="searchset")
    body = {"hook": "order-sign", "hookInstance": "i-3", "context": context, "prefetch": prefetch}
    response = client.post(f"/cds-services/{OSIGN}", json=body)
    assert "kratom-serotonergic" in rules_of(response.json())


def test_order_select_marks_cards_about_the_selection(client: Client, full_prefetch: Any) -> None:
    context = hook_library("order-select", "Example (R4)", keep_medication_orders=False)
    draft = sertraline("draft-9", subject="Patient/1288992", status="draft")
    context["draftOrders"]["entry"].append({"resource": draft})
    context["selections"] = ["NutritionOrder/pureeddiet-simple", "MedicationRequest/draft-9"]
    prefetch = full_prefetch(patient("1288992"), kratom(subject="Patient/1288992"), pid="1288992")
    body = {"hook": "order-select", "hookInstance": "i-4", "context": context, "prefetch": prefetch}
    response = client.post(f"/cds-services/{OSEL}", json=body)
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())
    findings = {
        c["extension"]["org.careplan-rules.finding"]["rule"]: c["extension"]["org.careplan-rules.finding"]
        for c in response.json()["cards"]
    }
    assert findings["kratom-serotonergic"]["selected"] is True
    assert findings["kratom-use"]["selected"] is False


def test_dstu2_draft_orders_are_named_on_a_card_not_skipped(client: Client, full_prefetch: Any) -> None:
    context = hook_library("order-sign", "Example (DSTU2)")
    body = {"hook": "order-sign", "hookInstance": "i-5", "context": context, "prefetch": full_prefetch(pid="1288992")}
    response = client.post(f"/cds-services/{OSIGN}", json=body)
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())
    [card] = response.json()["cards"]
    assert "could not run" in card["summary"] and "MedicationOrder" in card["detail"]


@pytest.mark.parametrize(
    ("name", "service"),
    [
        # its draft orders name Patient/1288992 while context.patientId is "example": evaluated as the context's
        pytest.param("order_sign_hook_request.json", OSIGN, id="order-sign fetches and evaluates"),
        pytest.param("order_select_hook_request.json", OSEL, id="order-select"),
    ],
)
def test_inferno_requests(tmp_path: Path, name: str, service: str) -> None:
    request = read_json(external("cds-hooks", "inferno-crd-test-kit", name))
    stub = FhirStub(
        [patient("example")], base=request["fhirServer"], token=request["fhirAuthorization"]["access_token"]
    )
    with running(start(tmp_path, stub=stub)) as c:
        response = c.post(f"/cds-services/{service}", json=request)
    assert response.status_code == 200, response.text
    assert_valid_response(response.json())


def test_pddi_requests_lack_user_id(client: Client, tmp_path: Path) -> None:
    request = read_json(external("cds-hooks", "pddi-cds", "warfarin-nsaids-order-sign-no-coordination.json"))
    response = client.post(f"/cds-services/{OSIGN}", json=request)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["context.userId"]
    with running(start(tmp_path, context_validation="lenient")) as c:
        lenient = c.post(f"/cds-services/{OSIGN}", json=request)
    assert lenient.status_code == 412  # our prefetch keys are absent and its server is unreachable


def test_invalid_data_gives_a_could_not_evaluate_card(client: Client, pv_body: Body, pv_url: str) -> None:
    broken = kratom()
    broken["effectiveDateTime"] = "2026-02-30"
    response = client.post(pv_url, json=pv_body(patient(), broken, sertraline()))
    assert response.status_code == 200
    assert_valid_response(response.json())
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning" and "could not run" in card["summary"]
    assert "CPR-F010" in card["detail"]
    assert "suggestions" not in card


def test_an_engine_bug_still_reaches_the_clinician(
    client: Client, pv_body: Body, pv_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from careplan_rules.api import Engine

    def boom(*_a: Any, **_k: Any) -> Any:
        raise KeyError("secret patient value")

    monkeypatch.setattr(Engine, "evaluate_document", boom)
    response = client.post(pv_url, json=pv_body())
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert "could not run" in card["summary"] and "secret" not in card["detail"]


def test_another_patients_prefetch_is_refused(client: Client, pv_body: Body, pv_url: str) -> None:
    body = pv_body(patient(), kratom(), med_request("x1", rx("328670", "Sertraline"), subject="Patient/other"))
    response = client.post(pv_url, json=body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["prefetch.medicationRequest"]
    wrong_patient = pv_body(patient("p2"), kratom())
    assert client.post(pv_url, json=wrong_patient).status_code == 400


def test_extra_prefetch_keys_are_used_not_dropped(client: Client, pv_body: Body, pv_url: str) -> None:
    body = pv_body(patient(), kratom())
    body["prefetch"]["myMeds"] = bundle(sertraline(), btype="searchset")  # a key we did not declare
    body["prefetch"]["user"] = "123"  # the spec example's bare string: ignored
    response = client.post(pv_url, json=body)
    assert "kratom-serotonergic" in rules_of(response.json())


def test_naloxone_is_proposed_as_a_draft_order(client: Client, pv_body: Body, pv_url: str) -> None:
    oxycodone = med_request("o1", rx("7804", "oxycodone"))
    response = client.post(pv_url, json=pv_body(patient(), kratom(), oxycodone))
    card = next(c for c in response.json()["cards"] if rules_of({"cards": [c]}) == ["naloxone-offer"])
    order = next(s for s in card["suggestions"] if s["label"].startswith("Draft order"))
    [action] = order["actions"]
    assert action["type"] == "create" and action["resource"]["resourceType"] == "MedicationRequest"
    assert action["resource"]["status"] == "draft" and action["resource"]["subject"] == {"reference": "Patient/p1"}
    assert action["resource"]["medicationCodeableConcept"]["coding"][0]["display"] == "naloxone"


@pytest.mark.durable
@pytest.mark.skipif(import_problem() is not None, reason=str(import_problem()))
def test_durable_backend_serves_the_same_cards_crash_isolated(
    tmp_path: Path, client: Client, pv_body: Body, pv_url: str
) -> None:
    config = make_config(tmp_path, backend="durable", durable_workers=1, auth={"insecure_no_auth": True})
    engine = service_engine(config)
    assert engine.backend.name == "durable" and getattr(engine.backend, "isolated", False)
    expected = client.post(pv_url, json=pv_body()).json()
    with running(start(tmp_path / "durable", backend="durable", durable_workers=1)) as durable:
        response = durable.post(pv_url, json=pv_body())
    assert response.status_code == 200, response.text
    assert rules_of(response.json()) == rules_of(expected)
