"""Malformed requests and HTTP edges: every error is an OperationOutcome naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factories import bundle, sertraline
from tests.service.helpers import OSEL, OSIGN, PV, Client, running, start

Body = Callable[..., dict[str, Any]]


def outcome(response: Any, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    for issue in body["issue"]:
        assert issue["severity"] in ("error", "fatal", "warning") and issue["code"] and issue["details"]["text"]
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def expressions(issues: list[dict[str, Any]]) -> set[str]:
    return {e for i in issues for e in i.get("expression", [])}


def test_every_problem_of_a_request_is_listed(client: Client) -> None:
    body = {
        "hook": "order-sign",
        "hookInstance": 7,
        "fhirAuthorization": {"access_token": "t", "token_type": "MAC", "scope": "s", "subject": "x"},
        "context": {"userId": "Device/1", "encounterId": "e 1"},
        "prefetch": [],
    }
    issues = outcome(client.post(f"/cds-services/{PV}", json=body), 400)
    assert expressions(issues) == {
        "hook",
        "hookInstance",
        "fhirServer",
        "fhirAuthorization.token_type",
        "fhirAuthorization.expires_in",
        "prefetch",
        "context.userId",
        "context.patientId",
        "context.encounterId",
    }


@pytest.mark.parametrize(
    ("context", "where"),
    [
        ({"userId": "Practitioner/1", "patientId": "p1"}, {"context.draftOrders", "context.selections"}),
        (
            {
                "userId": "Practitioner/1",
                "patientId": "p1",
                "draftOrders": {"resourceType": "Parameters"},
                "selections": [],
            },
            {"context.draftOrders", "context.selections"},
        ),
        (
            {
                "userId": "Practitioner/1",
                "patientId": "p1",
                "draftOrders": bundle(sertraline()),
                "selections": ["MedicationRequest/nope"],
            },
            {"context.selections[0]"},
        ),
        (
            {
                "userId": "Patient/p1",
                "patientId": "p1",
                "draftOrders": bundle(sertraline()),
                "selections": ["MedicationRequest/s1"],
            },
            {"context.userId"},  # order-select users are practitioners
        ),
        (
            {
                "userId": "Practitioner/1",
                "patientId": "p1",
                "draftOrders": {"resourceType": "Bundle", "entry": [{"x": 1}]},
                "selections": "MedicationRequest/s1",
            },
            {"context.draftOrders.entry[0].resource", "context.selections"},
        ),
    ],
)
def test_order_select_context_is_checked(client: Client, context: dict[str, Any], where: set[str]) -> None:
    body = {"hook": "order-select", "hookInstance": "i", "context": context}
    assert expressions(outcome(client.post(f"/cds-services/{OSEL}", json=body), 400)) == where


def test_a_token_for_another_patient_is_refused(client: Client, pv_body: Body, pv_url: str) -> None:
    body = pv_body(
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization={
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds",
            "patient": "p2",
        },
    )
    assert expressions(outcome(client.post(pv_url, json=body), 400)) == {"fhirAuthorization.patient"}


def test_order_sign_needs_draft_orders(client: Client) -> None:
    body = {"hook": "order-sign", "hookInstance": "i", "context": {"userId": "Practitioner/1", "patientId": "p1"}}
    assert expressions(outcome(client.post(f"/cds-services/{OSIGN}", json=body), 400)) == {"context.draftOrders"}


def test_hook_instance_is_an_identifier_not_a_payload(client: Client, pv_body: Body, pv_url: str) -> None:
    # it is logged with every call and stored with every card: a client's megabyte would be too
    response = client.post(pv_url, json=pv_body(hookInstance="h" * 257))
    assert response.status_code == 400
    [issue] = response.json()["issue"]
    assert issue["code"] == "too-long" and issue["expression"] == ["hookInstance"]
    assert client.post(pv_url, json=pv_body(hookInstance="h" * 256)).status_code == 200


def test_context_must_be_an_object(client: Client) -> None:
    body = {"hook": "patient-view", "hookInstance": "i", "context": "p1"}
    assert expressions(outcome(client.post(f"/cds-services/{PV}", json=body), 400)) == {"context"}


def test_patient_id_may_be_a_reference(client: Client, pv_body: Body, pv_url: str) -> None:
    body = pv_body()
    body["context"]["patientId"] = "Patient/p1"
    assert client.post(pv_url, json=body).status_code == 200


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("a string", 400),
        ({"resourceType": "Observation", "id": "o"}, 400),  # the patient key holds another type
        ({"no": "resourceType"}, 400),
    ],
)
def test_malformed_prefetch_values(client: Client, pv_body: Body, pv_url: str, value: Any, status: int) -> None:
    body = pv_body()
    body["prefetch"]["patient"] = value
    assert expressions(outcome(client.post(pv_url, json=body), status)) == {"prefetch.patient"}


def test_malformed_json(client: Client, pv_url: str) -> None:
    issues = outcome(client.post(pv_url, content=b'{"hook": ', headers={"content-type": "application/json"}), 400)
    assert "line 1" in issues[0]["details"]["text"]
    outcome(client.post(pv_url, content=b"", headers={"content-type": "application/json"}), 400)
    outcome(client.post(pv_url, content=b"[1, 2]", headers={"content-type": "application/json"}), 400)
    outcome(client.post(pv_url, content=b'{"a": NaN}', headers={"content-type": "application/json"}), 400)
    outcome(client.post(pv_url, content=b"\xff\xfe{", headers={"content-type": "application/json"}), 400)


def test_non_json_content_type_is_415(client: Client, pv_url: str) -> None:
    outcome(
        client.post(
            pv_url, content=b"hook=patient-view", headers={"content-type": "application/x-www-form-urlencoded"}
        ),
        415,
    )


def test_fhir_json_and_missing_content_type_are_accepted(client: Client, pv_body: Body, pv_url: str) -> None:
    import json

    raw = json.dumps(pv_body()).encode()
    assert (
        client.post(pv_url, content=raw, headers={"content-type": "application/fhir+json; charset=utf-8"}).status_code
        == 200
    )
    assert client.post(pv_url, content=raw).status_code == 200


def test_request_size_limit(tmp_path: Path, pv_body: Body) -> None:
    big = pv_body(*[sertraline(f"s{i}") for i in range(20)])
    with running(start(tmp_path, max_request_bytes=4096)) as c:
        assert c.post(f"/cds-services/{PV}", json=pv_body()).status_code == 200
        issues = outcome(c.post(f"/cds-services/{PV}", json=big), 413)
        assert issues[0]["code"] == "too-long"

        async def chunks() -> Any:  # no Content-Length: the limit applies while streaming
            for _ in range(10):
                yield b" " * 1000

        outcome(c.post(f"/cds-services/{PV}", content=chunks(), headers={"content-type": "application/json"}), 413)


def test_unknown_service_method_and_path(client: Client) -> None:
    issues = outcome(client.post("/cds-services/nope", json={}), 404)
    assert "nope" in issues[0]["details"]["text"]
    outcome(client.post("/cds-services/nope/feedback", json={}), 404)
    outcome(client.get(f"/cds-services/{PV}"), 405)
    outcome(client.get("/elsewhere"), 404)
    outcome(client.request("DELETE", "/cds-services"), 405)


def test_unexpected_errors_are_a_500_outcome_without_the_message(
    client: Client, pv_body: Body, pv_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import careplan_rules.service.calls as calls_module

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("Kratom powder 3 g for Jane Doe")

    monkeypatch.setattr(calls_module, "gather", boom)
    issues = outcome(client.post(pv_url, json=pv_body()), 500)
    assert issues[0]["code"] == "exception"
    assert "Jane" not in caplog.text and "RuntimeError" in caplog.text


def test_health_needs_no_authentication(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
