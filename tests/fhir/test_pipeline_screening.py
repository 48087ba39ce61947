"""Observations and Conditions are validated when they mention the packs' terminology.

The safety argument has two halves, both tested here: every way a rule reads an Observation or
a Condition goes through a value set (the criteria that read them require one), and the
mention test says "yes" to everything a value set can match, whatever the resource's shape.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careplan_rules import Engine
from careplan_rules.engine import criteria
from careplan_rules.fhir.pipeline import SCREENED_TYPES
from careplan_rules.fhir.reader import read_any
from careplan_rules.terminology.mentions import TermIndex, term_strings
from careplan_rules.terminology.valueset import CompiledValueSet
from tests.factories import LOINC, NOW, SNOMED, bundle, fired, iter_examples, kratom, patient, sertraline

Resource = dict[str, Any]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.default()


def heart_rate(rid: str = "hr1", **changes: Any) -> Resource:
    r: Resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    r.update(changes)
    return r


def phq9(rid: str = "phq1", **changes: Any) -> Resource:
    r = heart_rate(rid, code={"coding": [{"system": LOINC, "code": "44261-6"}]}, valueInteger=17)
    del r["valueQuantity"]
    r.update(changes)
    return r


def test_a_malformed_vital_sign_does_not_stop_the_kratom_warnings(engine: Engine) -> None:
    broken = heart_rate(status=5, effectiveDateTime="last tuesday")
    result = engine.evaluate(bundle(patient(), kratom(), sertraline(), broken), now=NOW)[0]
    assert "kratom-serotonergic" in fired(result)


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param(phq9(status=5), id="PHQ-9 with a numeric status"),
        pytest.param(phq9(code={"coding": {"system": LOINC, "code": "44261-6"}}), id="coding as an object"),
        pytest.param(
            {
                "resourceType": "Condition",
                "id": "c1",
                "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": SNOMED, "code": 35489007}]},
            },
            id="depression code as a number",
        ),
        pytest.param(heart_rate(note=[{"text": "also takes kratom"}], status=5), id="term in a note only"),
        pytest.param(heart_rate(valueCodeableConcept="kratom", status="final"), id="value given as a string"),
        pytest.param(
            {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": "Kratom use"},
            id="Condition code given as a string",
        ),
        pytest.param(
            {
                "resourceType": "Condition",
                "id": "c1",
                "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": SNOMED, "code": "35489007"}]},
                "onsetDateTime": "yesterday",
            },
            id="depression Condition with a bad date",
        ),
    ],
)
def test_a_malformed_resource_that_mentions_the_packs_terms_is_an_error(engine: Engine, resource: Resource) -> None:
    result = engine.evaluate(bundle(patient(), resource), now=NOW, on_error="collect")[0]
    assert not result.ok
    assert any(e.code.startswith("CPR-F") for e in result.errors), [e.render() for e in result.errors]


def test_explain_reads_the_same_resources_as_evaluate(engine: Engine) -> None:
    doc = read_any(bundle(patient(), kratom(), heart_rate(status=5)), "<input>")
    prepared = engine.prepare_input(doc)
    assert [p.errors for p in prepared.patients] == [[]]


# --- the first half: rules read Observations and Conditions only through value sets -------------


def test_criteria_that_read_screened_types_require_a_value_set() -> None:
    # a new criterion kind reading Observations or Conditions without a value set would let an
    # unvalidated resource reach a rule: add it here and drop the type from SCREENED_TYPES
    assert frozenset({"Observation", "Condition"}) == SCREENED_TYPES
    for cls in (criteria.ExposureCriterion, criteria.ConditionCriterion, criteria.ObservationCriterion):
        hints = typing.get_type_hints(cls, vars(criteria))
        assert hints["valueset"] is CompiledValueSet, cls.__name__
    readers = {
        name
        for name, cls in vars(criteria).items()
        if dataclasses.is_dataclass(cls) and name.endswith("Criterion") and "valueset" in cls.__dataclass_fields__
    }
    assert readers == {"ExposureCriterion", "ConditionCriterion", "ObservationCriterion", "ReviewCriterion"}


def _matched_refs(engine: Engine, data: Any) -> set[str]:
    refs: set[str] = set()
    for result in engine.evaluate(data, now=NOW, trace=True, on_error="collect"):
        for outcome in result.outcomes:
            for crit in outcome.criteria.values():
                refs.update(m.ref for m in crit.matches)
    return refs


def _resources(data: Any) -> dict[str, Resource]:
    doc = read_any(data, "<input>")
    return {f"{e.resource_type}/{e.resource.get('id')}": e.resource for e in doc.entries}


@pytest.mark.parametrize("path", list(iter_examples()), ids=lambda p: p.name)
def test_every_screened_resource_a_rule_matched_in_the_examples_is_a_mention(engine: Engine, path: Any) -> None:
    resources = _resources(path)
    for ref in _matched_refs(engine, path):
        if ref.split("/")[0] in SCREENED_TYPES and ref in resources:
            assert engine.terms.mentions(resources[ref]), ref


# --- the second half: whatever a value set matches, the index mentions --------------------------


def _vocabulary(engine: Engine) -> tuple[list[tuple[str, str]], list[str]]:
    codes: set[tuple[str, str]] = set()
    words: set[str] = set()
    for registry in engine.ruleset.registries.values():
        for vs in registry:
            codes.update((e.system, e.code) for e in vs.entries if e.code)
            words.update(vs.names)
            for matcher, _ in vs.text_matchers:
                words.update(matcher.tokens)
    return sorted(codes), sorted(words)


_ENGINE = Engine.default()
_CODES, _WORDS = _vocabulary(_ENGINE)
_FILLER = ["daily", "no longer", "denies", "tea", "100 MG", "(", "/", "Oral Tablet", "history of", "é"]


@st.composite
def concepts(draw: st.DrawFn) -> Resource:
    codings = []
    for _ in range(draw(st.integers(0, 2))):
        system, code = draw(st.sampled_from(_CODES)) if draw(st.booleans()) else (LOINC, "8867-4")
        coding: Resource = {"system": system, "code": code}
        if draw(st.booleans()):
            coding["display"] = draw(_phrases)
        codings.append(coding)
    cc: Resource = {"coding": codings}
    if draw(st.booleans()):
        cc["text"] = draw(_phrases)
    return cc


_phrases = st.lists(st.sampled_from(_WORDS[:: max(1, len(_WORDS) // 400)] + _FILLER), min_size=1, max_size=4).map(
    " ".join
)


@st.composite
def observations(draw: st.DrawFn) -> Resource:
    r = heart_rate(code=draw(concepts()))
    category = draw(st.sampled_from(["vital-signs", "social-history", "laboratory", "survey"]))
    r["category"] = [{"coding": [{"code": category}]}]
    del r["valueQuantity"]
    value = draw(st.sampled_from(["cc", "string", "integer", "none"]))
    if value == "cc":
        r["valueCodeableConcept"] = draw(concepts())
    elif value == "string":
        r["valueString"] = draw(_phrases)
    elif value == "integer":
        r["valueInteger"] = 12
    if draw(st.booleans()):
        r["interpretation"] = [{"coding": [{"code": "POS"}]}]
    if draw(st.booleans()):
        r["component"] = [{"code": draw(concepts()), "valueInteger": 3}]
    if draw(st.booleans()):
        r["note"] = [{"text": draw(_phrases)}]
    return r


@st.composite
def conditions(draw: st.DrawFn) -> Resource:
    r: Resource = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": draw(concepts()),
        "onsetDateTime": "2026-01-01",
    }
    if draw(st.booleans()):
        r["note"] = [{"text": draw(_phrases)}]
    return r


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=st.one_of(observations(), conditions()))
def test_whatever_a_value_set_matches_in_a_resource_is_a_mention(resource: Resource) -> None:
    """Normalise the resource and match every fact against every value set of the pack."""
    doc = read_any(bundle(patient(), resource), "<input>")
    prepared = _ENGINE.prepare_input(doc)
    record = prepared.patients[0].record
    assert record is not None
    matched = False
    for registry in _ENGINE.ruleset.registries.values():
        for vs in registry:
            for exp in record.exposures:
                matched = matched or bool(vs.match_medication(exp.medication, exp.notes)[0])
            for cond in record.conditions:
                matched = matched or bool(vs.match_concept_codings(cond.codings, cond.texts)[0])
            for obs in record.observations:
                matched = matched or bool(vs.match_concept_codings(obs.codings, obs.texts)[0])
                for comp in obs.components:
                    matched = matched or bool(vs.match_concept_codings(comp.codings, ())[0])
    if matched:
        assert _ENGINE.terms.mentions(resource), json.dumps(resource)
    # the fast walk and the readable one agree
    assert _ENGINE.terms.mentions(resource) == any(_ENGINE.terms._hit(s) for s in term_strings(resource))


def test_term_strings_skip_ids_dates_references_and_quantities() -> None:
    found = list(term_strings(heart_rate(note=[{"text": "kratom"}])))
    assert sorted(found) == sorted(["vital-signs", "8867-4", "Heart rate", "kratom"])


def test_an_index_of_no_value_sets_mentions_nothing() -> None:
    assert not TermIndex([]).mentions(heart_rate())


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("328670", id="a product whose mapped ingredient is listed (Sertraline 100MG)"),
        pytest.param("F32.A", id="an ICD-10-CM code of a listed family"),
        pytest.param("f329", id="undotted, lower case"),
    ],
)
def test_codes_that_a_value_set_reaches_indirectly_are_mentions(engine: Engine, code: str) -> None:
    assert engine.terms.mentions({"code": {"coding": [{"code": code}]}})
    assert not engine.terms.mentions(heart_rate())


def test_unmentioned_observations_give_facts_only_when_tracing(engine: Engine) -> None:
    doc = read_any(bundle(patient(), kratom(), heart_rate(), phq9()), "<input>")
    plain = engine.prepare_input(doc).patients[0].record
    traced = engine.prepare_input(doc, trace=True).patients[0].record
    assert plain is not None and traced is not None
    assert [o.ref for o in plain.observations] == ["Observation/phq1"]
    assert [o.ref for o in traced.observations] == ["Observation/hr1", "Observation/phq1"]
    assert plain.resource_refs == traced.resource_refs  # still listed as the patient's records


def test_containers_built_by_an_api_caller_are_walked_too(engine: Engine) -> None:
    from collections import OrderedDict

    coding = OrderedDict(system=LOINC, code="44261-6")
    assert engine.terms.mentions({"code": OrderedDict(coding=(coding,))})
    assert engine.terms.mentions({"note": ({"text": "kratom"},)})
