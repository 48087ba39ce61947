"""What counts as a documented clinician review (missing-clinician-review, research §4.5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import SNOMED, fired, kratom, patient, sertraline

Evaluate = Callable[..., Any]
NOW = "2026-06-01T12:00:00Z"


def provenance(
    role: str = "verifier",
    who: str = "Practitioner/dr1",
    target: str = "MedicationStatement/k1",
    recorded: str = "2026-05-10T09:00:00Z",
) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": "prov1",
        "target": [{"reference": target}],
        "recorded": recorded,
        "agent": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": role}
                    ]
                },
                "who": {"reference": who},
            }
        ],
    }


def procedure(
    code: str = "428191000124101",
    performer: str | None = "Practitioner/dr1",
    when: str = "2026-05-10T09:00:00Z",
    status: str = "completed",
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": "proc1",
        "status": status,
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": when,
    }
    if performer:
        r["performer"] = [{"actor": {"reference": performer}}]
    return r


def reviewed(evaluate: Evaluate, *resources: dict[str, Any]) -> bool:
    result = evaluate(patient(), kratom(effective="2026-05-01", date_asserted="2026-05-01"), *resources, now=NOW)
    assert "kratom-use" in fired(result)
    return "missing-clinician-review" not in fired(result)


def test_no_review_fires(evaluate: Evaluate) -> None:
    assert not reviewed(evaluate)


@pytest.mark.parametrize("role", ["verifier", "attester", "author"])
def test_practitioner_provenance_on_the_kratom_statement(evaluate: Evaluate, role: str) -> None:
    assert reviewed(evaluate, provenance(role=role))


def test_practitioner_role_counts(evaluate: Evaluate) -> None:
    assert reviewed(evaluate, provenance(who="PractitionerRole/pr1"))


def test_patients_own_entry_is_not_a_review(evaluate: Evaluate) -> None:
    assert not reviewed(evaluate, provenance(role="author", who="Patient/p1"))


def test_provenance_role_must_be_verifier_attester_or_author(evaluate: Evaluate) -> None:
    assert not reviewed(evaluate, provenance(role="enterer"))


def test_provenance_on_the_care_plan_counts(evaluate: Evaluate) -> None:
    plan = {
        "resourceType": "CarePlan",
        "id": "cp1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
    }
    assert reviewed(evaluate, plan, provenance(target="CarePlan/cp1"))


def test_provenance_on_another_record_does_not_count(evaluate: Evaluate) -> None:
    assert not reviewed(evaluate, sertraline(), provenance(target="MedicationRequest/s1"))


def test_review_before_the_latest_kratom_record_does_not_count(evaluate: Evaluate) -> None:
    assert not reviewed(evaluate, provenance(recorded="2026-04-30T09:00:00Z"))
    # same day counts ("on or after")
    assert reviewed(evaluate, provenance(recorded="2026-05-01T00:00:01Z"))


def test_completed_medication_review_procedure_by_a_practitioner(evaluate: Evaluate) -> None:
    assert reviewed(evaluate, procedure())
    assert not reviewed(evaluate, procedure(performer=None))  # cannot be attributed
    assert not reviewed(evaluate, procedure(performer="Patient/p1"))
    assert not reviewed(evaluate, procedure(status="in-progress"))
    assert not reviewed(evaluate, procedure(code="73761001"))  # not a medication review code


def test_task_coded_as_medication_review(evaluate: Evaluate) -> None:
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": SNOMED, "code": "428191000124101"}]},
        "for": {"reference": "Patient/p1"},
        "owner": {"reference": "Practitioner/dr1"},
        "executionPeriod": {"end": "2026-05-20"},
    }
    assert reviewed(evaluate, task)


def test_detected_issue_mitigation_by_a_practitioner(evaluate: Evaluate) -> None:
    issue = {
        "resourceType": "DetectedIssue",
        "id": "di1",
        "status": "final",
        "patient": {"reference": "Patient/p1"},
        "implicated": [{"reference": "MedicationStatement/k1"}],
        "mitigation": [
            {
                "action": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "13"}]},
                "date": "2026-05-15",
                "author": {"reference": "Practitioner/dr1"},
            }
        ],
    }
    assert reviewed(evaluate, issue)
    issue["mitigation"][0]["author"] = {"reference": "Device/bot"}
    assert not reviewed(evaluate, issue)


def test_review_older_than_the_review_lookback(engine: Any) -> None:
    from careplan_rules import Engine
    from tests.factories import bundle

    tight = Engine.default(params={"missing-clinician-review": {"review_lookback": "P7D"}})
    data = bundle(patient(), kratom(effective="2026-05-01", date_asserted="2026-05-01"), provenance())
    assert "missing-clinician-review" in fired(tight.evaluate(data, now=NOW)[0])
    assert "missing-clinician-review" not in fired(engine.evaluate(data, now=NOW)[0])


def test_explains_why_reviews_were_rejected(engine: Any) -> None:
    from tests.factories import bundle

    data = bundle(patient(), kratom(), provenance(role="author", who="Patient/p1"), procedure(performer=None))
    result = engine.evaluate(data, now=NOW, trace=True)[0]
    outcome = next(o for o in result.outcomes if o.rule_id == "missing-clinician-review")
    reasons = [r.reason for r in outcome.criteria["clinician_review"].rejected]
    assert any("not a clinician review" in r for r in reasons)
    assert any("no identifiable clinician" in r for r in reasons)
