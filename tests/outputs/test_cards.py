"""CDS Hooks cards: spec invariants, summaries, override reasons, suggestions, de-duplication,
and the "could not evaluate" card."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources import get_fhir_model_class as r5_class
from fhir.resources.R4B import get_fhir_model_class as r4_class

from careplan_rules import Engine
from careplan_rules.outputs.cards import (
    DEFAULT_OVERRIDE_REASONS,
    NON_ADHERENCE,
    build_cards,
    could_not_evaluate_card,
    short_summary,
)
from tests.factories import NOW, bundle, external, iter_examples, kratom, patient, read_json, sertraline
from tests.loader import minimal
from tests.service.helpers import assert_valid_response, invariant_violations

MOMENT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def cards_for(engine: Engine, data: Any, **kwargs: Any) -> list[dict[str, Any]]:
    results = engine.evaluate(data, now=NOW, on_error="collect")
    return build_cards(results.patients, engine.ruleset, results.now, "0.1.0", **kwargs)


def validate(resource: dict[str, Any], release: str) -> None:
    cls = r5_class(resource["resourceType"]) if release == "R5" else r4_class(resource["resourceType"])
    cls.model_validate(resource)


@pytest.mark.parametrize("example", list(iter_examples()), ids=lambda p: p.name)
def test_cards_of_every_example_meet_the_spec_invariants(engine: Engine, example: Path) -> None:
    results = engine.evaluate(example, now=NOW, on_error="collect")
    cards = build_cards(results.patients, engine.ruleset, results.now, "0.1.0")
    assert_valid_response({"cards": cards})
    [release] = {r.fhir_version for r in results if r.fhir_version}
    for card in cards:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                validate(action["resource"], release)  # what the EHR would create is valid FHIR


def test_the_checker_agrees_with_the_spec_examples() -> None:
    spec = read_json(external("cds-hooks", "spec-2.0.1", "response-example.json"))
    assert invariant_violations(spec, ours=False) == []
    assert invariant_violations(spec) == ["cards[1]: uuid"]  # optional in the spec, always sent by us
    inferno = read_json(external("cds-hooks", "inferno-crd-test-kit", "valid_cards.json"))
    assert invariant_violations({"cards": inferno}, ours=False) == []
    broken = read_json(external("cds-hooks", "spec-2.0.1", "response-autolaunchable-example.json"))
    assert invariant_violations(broken) == ["cards[0]: indicator"]  # the spec's own example omits it
    bad = {
        "cards": [
            {
                "summary": "x",
                "indicator": "info",
                "source": {"label": "s"},
                "uuid": "9d4f8a1e-0000-4000-8000-000000000000",
                "suggestions": [
                    {
                        "label": "l",
                        "uuid": "u",
                        "actions": [{"type": "delete", "resource": {"resourceType": "Patient"}}],
                    }
                ],
            }
        ]
    }
    assert set(invariant_violations(bad)) == {
        "cards[0]: cds-resp-6",
        "cards[0].suggestions[0]: cds-resp-5",
        "cards[0].suggestions[0].actions[0]: cds-resp-2",
    }


def test_summaries_are_under_140_characters() -> None:
    assert len(short_summary("x" * 300)) == 139
    assert short_summary("  a\n b  ") == "a b"
    assert short_summary("y" * 139) == "y" * 139


def test_default_override_reasons_come_from_the_3_0_code_system() -> None:
    system = read_json(external("cds-hooks", "spec-3.0.0-ballot", "CodeSystem-non-adherence-reason-codes.json"))
    assert system["url"] == NON_ADHERENCE
    displays: dict[str, str] = {}

    def walk(concepts: list[dict[str, Any]]) -> None:
        for c in concepts:
            displays[c["code"]] = c["display"].rstrip("*")  # "*" marks a footnote in the CodeSystem
            walk(c.get("concept", []))

    walk(system["concept"])
    for code, display in DEFAULT_OVERRIDE_REASONS:
        assert displays[code] == display


def test_card_content(engine: Engine) -> None:
    cards = cards_for(engine, bundle(patient(), kratom(), sertraline()))
    card = next(c for c in cards if c["source"]["topic"]["code"] == "kratom-serotonergic")
    assert card["summary"] == "Kratom + sertraline: case reports of serotonin toxicity; monitor"
    assert "**Based on:**" in card["detail"] and "MedicationRequest/s1" in card["detail"]
    [suggestion] = card["suggestions"]
    issue, plan = (a["resource"] for a in suggestion["actions"])
    assert issue["resourceType"] == "DetectedIssue" and issue["code"]["coding"][0]["code"] == "NHP"
    assert plan["resourceType"] == "CarePlan" and plan["supportingInfo"] == [
        {"reference": f"DetectedIssue/{issue['id']}"}
    ]
    assert card["extension"]["org.careplan-rules.finding"]["detectedIssue"] == issue["id"]
    assert {link["label"] for link in card["links"]} >= {
        "Tanna2023-CPT",
        "Rule kratom-serotonergic: logic and evidence",
    }


def test_uuids_are_stable_without_salt_and_distinct_with(engine: Engine) -> None:
    data = bundle(patient(), kratom(), sertraline())
    plain = [c["uuid"] for c in cards_for(engine, data)]
    assert plain == [c["uuid"] for c in cards_for(engine, data)]
    salted = [c["uuid"] for c in cards_for(engine, data, salt="hook-1")]
    assert not set(plain) & set(salted)
    assert salted == [c["uuid"] for c in cards_for(engine, data, salt="hook-1")]


def test_duplicate_findings_give_one_card(engine: Engine) -> None:
    results = engine.evaluate(bundle(patient(), kratom(), sertraline()), now=NOW)
    twice = [*results.patients, *results.patients]
    assert len(build_cards(twice, engine.ruleset, MOMENT, "0.1.0")) == len(
        build_cards(results.patients, engine.ruleset, MOMENT, "0.1.0")
    )


def test_an_input_that_cannot_be_evaluated_gets_a_card(engine: Engine) -> None:
    broken = kratom()
    broken["effectiveDateTime"] = "2026-13-45"
    [card] = cards_for(engine, bundle(patient(), broken, sertraline()))
    assert card["indicator"] == "warning" and "could not run" in card["summary"]
    assert "CPR-F010" in card["detail"] and card["extension"]["org.careplan-rules.could-not-evaluate"]["codes"] == [
        "CPR-F010"
    ]
    assert cards_for(engine, bundle(patient(), broken), include_errors=False) == []
    assert_valid_response({"cards": [card]})


def test_could_not_evaluate_card_lists_at_most_ten_problems() -> None:
    from careplan_rules.diagnostics import Diagnostic

    diags = [Diagnostic(f"CPR-F0{i:02d}", f"problem {i}") for i in range(12)]
    card = could_not_evaluate_card("bad data", "Patient/1", diagnostics=diags, topic="demo rules")
    assert "demo rules" in card["detail"] and "… and 2 more" in card["detail"]
    assert_valid_response({"cards": [card]})


NALOXONE_RULE = minimal.RULE.replace(
    "  detail: Details.\n",
    """  detail: Details.
  careplan_activities:
    - id: offer-naloxone
      kind: MedicationRequest
      code: {system: http://www.nlm.nih.gov/research/umls/rxnorm, code: "1725059", display: naloxone nasal spray, unverified: true}
      title: Offer naloxone nasal spray
    - id: review
      kind: ServiceRequest
      title: Review the medication list
""",
)


@pytest.mark.parametrize("r5", [False, True])
def test_a_medication_request_activity_becomes_a_separate_draft_order_suggestion(
    tmp_pack: Callable[..., Path], r5: bool
) -> None:
    engine = Engine.from_paths(tmp_pack(minimal.files(rule=NALOXONE_RULE)))
    statement = kratom(text="sertraline 50 mg", r5=r5)
    statement["medication" if r5 else "medicationCodeableConcept"] = (
        {"concept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "36437"}]}}
        if r5
        else {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "36437"}]}
    )
    if r5:
        statement["status"] = "recorded"
    results = engine.evaluate(bundle(patient(), statement), now=NOW)
    [card] = build_cards(results.patients, engine.ruleset, results.now, "0.1.0")
    assert_valid_response({"cards": [card]})
    record, order = card["suggestions"]
    assert [a["resource"]["resourceType"] for a in record["actions"]] == ["DetectedIssue", "CarePlan"]
    assert order["label"] == "Draft order: Offer naloxone nasal spray" and record["uuid"] != order["uuid"]
    [action] = order["actions"]
    draft = action["resource"]
    assert draft["status"] == "draft" and draft["intent"] == "proposal"
    release = "R5" if r5 else "R4"
    for resource in (*(a["resource"] for a in record["actions"]), draft):
        validate(resource, release)
    issue_ref = f"DetectedIssue/{record['actions'][0]['resource']['id']}"
    linked = draft["reason"][0]["reference"]["reference"] if r5 else draft["detectedIssue"][0]["reference"]
    assert linked == issue_ref
