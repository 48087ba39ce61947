"""Generated DetectedIssue and CarePlan resources are valid FHIR in the input's release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources import get_fhir_model_class as r5_class
from fhir.resources.R4B import get_fhir_model_class as r4_class

from careplan_rules import Engine
from careplan_rules.outputs.fhir_bundle import build_bundles
from tests.factories import iter_examples

NOW = "2026-06-01T12:00:00Z"


def validate(resource: dict[str, Any], version: str) -> None:
    cls = r5_class(resource["resourceType"]) if version == "R5" else r4_class(resource["resourceType"])
    cls.model_validate(resource)


@pytest.mark.parametrize("example", list(iter_examples()), ids=lambda p: p.name)
def test_outputs_validate_in_the_input_release(engine: Engine, example: Path) -> None:
    for result in engine.evaluate(example, now=NOW):
        for issue in result.detected_issues:
            validate(dict(issue), result.fhir_version)
        if result.care_plan is not None:
            validate(dict(result.care_plan), result.fhir_version)


def test_detected_issue_shape(engine: Engine) -> None:
    result = engine.evaluate(Path("fhir_examples/kratom-sertraline.json"), now=NOW)[0]
    issue = next(d for d in result.detected_issues if d["identifier"][0]["value"].endswith("kratom-serotonergic"))
    assert issue["code"]["coding"][0]["code"] == "NHP"
    assert issue["severity"] == "moderate"
    assert issue["patient"] == {"reference": "Patient/p1"}
    assert issue["identifiedDateTime"] == "2026-06-01T12:00:00+00:00"
    assert [i["reference"] for i in issue["implicated"]] == ["MedicationRequest/s1", "MedicationStatement/k1"]


def test_r5_issue_uses_subject_and_plan_uses_contained_requests(engine: Engine) -> None:
    result = engine.evaluate(Path("fhir_examples/kratom-maoi-r5.json"), now=NOW)[0]
    assert all("subject" in d and "patient" not in d for d in result.detected_issues)
    plan = result.care_plan
    assert plan is not None and plan["status"] == "draft" and plan["intent"] == "proposal"
    refs = [a["plannedActivityReference"]["reference"] for a in plan["activity"]]
    assert {f"#{c['id']}" for c in plan["contained"]} == set(refs)


def test_care_plan_links_issues_and_merges_shared_activities(engine: Engine) -> None:
    result = engine.evaluate(Path("fhir_examples/kratom-sertraline.json"), now=NOW)[0]
    plan = result.care_plan
    assert plan is not None
    issue_refs = {f"DetectedIssue/{d['id']}" for d in result.detected_issues}
    assert {s["reference"] for s in plan["supportingInfo"]} == issue_refs
    reviews = [a for a in plan["activity"] if a["detail"]["code"]["text"].startswith("Clinician medication review")]
    assert len(reviews) == 1  # proposed by two rules, one activity with both reasons
    assert len(reviews[0]["detail"]["reasonReference"]) == 2


def test_no_activity_means_no_care_plan(engine: Engine) -> None:
    result = engine.evaluate(Path("fhir_examples/two-patients-social-history.json"), now=NOW).patient("Patient/p5b")
    assert result is not None and result.findings
    only_kratom = engine.evaluate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}],
        },
        now=NOW,
    )[0]
    assert only_kratom.findings == () and only_kratom.care_plan is None and only_kratom.to_dict()["carePlan"] is None


def test_fhir_bundle_output_rewrites_references_to_full_urls(engine: Engine) -> None:
    results = engine.evaluate(Path("fhir_examples/kratom-sertraline.json"), now=NOW)
    bundles = build_bundles(results.patients, results.now)
    assert len(bundles) == 1
    r4_class("Bundle").model_validate(bundles[0])
    text = json.dumps(bundles[0])
    assert "urn:uuid:" in text and '"DetectedIssue/' not in text


def test_remembered_care_plan_windows_keep_the_time_zone_of_now() -> None:
    # the same instant in two zones: adding a month to "30 January, 23:00 in New York" and to
    # "31 January, 04:00 UTC" ends on different days, so the remembered windows must not mix
    from datetime import UTC, datetime, timedelta, timezone

    from careplan_rules.findings import ProposedActivity
    from careplan_rules.outputs.careplan import _period

    activity = ProposedActivity("a", "ServiceRequest", "Follow-up", None, None, "P1M", "rule")
    new_york = datetime(2026, 1, 30, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    utc = new_york.astimezone(UTC)
    assert new_york == utc
    assert _period(activity, new_york) == {"start": "2026-01-31T04:00:00+00:00", "end": "2026-03-01T04:00:00+00:00"}
    assert _period(activity, utc) == {"start": "2026-01-31T04:00:00+00:00", "end": "2026-02-28T04:00:00+00:00"}
