"""Observations and Conditions are validated when they mention the packs' terminology.

The safety argument has two halves, both tested here: every way a rule reads an Observation or
a Condition goes through a value set (the criteria that read them require one), and the
mention test says "yes" to everything a value set can match, whatever the resource's shape.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import careplan_rules.fhir.normalize as normalize
from careplan_rules import Engine
from careplan_rules.engine import criteria
from careplan_rules.fhir.normalize.record import MEDICATION_TYPES
from careplan_rules.fhir.pipeline import SCREENED_TYPES, _mentions
from careplan_rules.fhir.reader import read_any
from careplan_rules.fhir.references import ReferenceIndex
from careplan_rules.terminology.mentions import TermIndex, is_term_key, term_strings
from careplan_rules.terminology.valueset import CompiledValueSet
from tests.factories import (
    LOINC,
    NOW,
    bundle,
    fired,
    iter_examples,
    kratom,
    med_request,
    med_statement,
    patient,
    rx,
    sertraline,
)

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


def omeprazole(rid: str = "o1", **kw: Any) -> Resource:
    return med_request(rid, rx("198053", "omeprazole 20 MG Delayed Release Oral Capsule"), **kw)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(heart_rate(status=5, effectiveDateTime="last tuesday"), id="vital sign"),
        pytest.param(omeprazole(status=5, authored="soon"), id="omeprazole order"),
    ],
)
def test_a_malformed_resource_no_rule_can_read_does_not_stop_the_kratom_warnings(
    engine: Engine, broken: Resource
) -> None:
    result = engine.evaluate(bundle(patient(), kratom(), sertraline(), broken), now=NOW)[0]
    assert "kratom-serotonergic" in fired(result)


def medication(rid: str, text: str) -> Resource:
    return {"resourceType": "Medication", "id": rid, "code": {"text": text}}


def by_reference(rid: str, target: str, **kw: Any) -> Resource:
    """A MedicationStatement naming its drug only through ``medicationReference``."""
    r = med_statement(rid, "x", **kw)
    del r["medicationCodeableConcept"]
    r["medicationReference"] = {"reference": target}
    return r


@pytest.mark.parametrize(
    ("resources", "code"),
    [
        pytest.param([by_reference("k1", "Medication/m1")], "CPR-F", id="unresolvable medicationReference"),
        pytest.param(
            [by_reference("k1", "Medication/m1", status=5), medication("m1", "Kratom capsules")],
            "CPR-F010",
            id="a malformed statement of a bundled kratom Medication",
        ),
        pytest.param([kratom(status=5)], "CPR-F010", id="a malformed kratom statement"),
        pytest.param(
            [omeprazole(authored="soon", note=[{"text": "and kratom"}])],
            "CPR-F010",
            id="kratom in the note of an omeprazole order",
        ),
    ],
)
def test_a_medication_that_may_name_a_listed_drug_is_always_read(
    engine: Engine, resources: list[Resource], code: str
) -> None:
    result = engine.evaluate(bundle(patient(), *resources), now=NOW, on_error="collect")[0]
    assert not result.ok
    assert any(e.code.startswith(code) for e in result.errors), [e.render() for e in result.errors]


def test_explain_reads_the_same_resources_as_evaluate(engine: Engine) -> None:
    doc = read_any(bundle(patient(), kratom(), heart_rate(status=5)), "<input>")
    prepared = engine.prepare_input(doc)
    assert [p.errors for p in prepared.patients] == [[]]


# --- the first half: rules read Observations and Conditions only through value sets -------------


def test_criteria_that_read_screened_types_require_a_value_set() -> None:
    # a new criterion kind reading medications, Observations or Conditions without a value set
    # would let an unvalidated resource reach a rule: drop the type from SCREENED_TYPES then
    assert frozenset({*MEDICATION_TYPES, "Observation", "Condition"}) == SCREENED_TYPES
    screened_facts = ("record.exposures", "record.conditions", "record.observations")
    readers = {
        name
        for name, cls in vars(criteria).items()
        if inspect.isclass(cls)
        and cls.__module__ == criteria.__name__
        and any(f in inspect.getsource(cls) for f in screened_facts)
    }
    assert readers == {"ExposureCriterion", "ConditionCriterion", "ObservationCriterion"}
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


@pytest.mark.parametrize("path", list(iter_examples()), ids=lambda p: p.name)
def test_every_screened_resource_a_rule_matched_in_the_examples_is_a_mention(engine: Engine, path: Any) -> None:
    doc = read_any(path, path.name)
    index = ReferenceIndex(doc.entries)
    entries = {index.ref_of(e): e for e in doc.entries}
    for ref in _matched_refs(engine, path):
        if ref.split("/")[0] in SCREENED_TYPES and ref in entries:
            assert _mentions(entries[ref], index, engine.terms), ref


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


@st.composite
def medications(draw: st.DrawFn) -> list[Resource]:
    """A medication resource of any kind, its drug coded, named, or in a bundled Medication."""
    kind = draw(st.sampled_from(MEDICATION_TYPES))
    r: Resource = {"resourceType": kind, "id": "x1", "status": "active", "subject": {"reference": "Patient/p1"}}
    if kind == "MedicationRequest":
        r["intent"] = "order"
    if kind == "MedicationAdministration":
        r["effectiveDateTime"] = "2026-05-01"
    extra: list[Resource] = []
    form = draw(st.sampled_from(["concept", "bundled", "contained"]))
    if form == "concept":
        r["medicationCodeableConcept"] = draw(concepts())
    else:
        med: Resource = {"resourceType": "Medication", "id": "m1", "code": draw(concepts())}
        if draw(st.booleans()):
            med["ingredient"] = [{"itemCodeableConcept": draw(concepts())}]
        if form == "contained":
            r["contained"] = [med]
            r["medicationReference"] = {"reference": "#m1"}
        else:
            extra.append(med)
            r["medicationReference"] = {"reference": "Medication/m1"}
    if draw(st.booleans()):
        r["note"] = [{"text": draw(_phrases)}]
    if draw(st.booleans()):
        dosage = {"text": draw(_phrases)}
        if kind == "MedicationAdministration":
            r["dosage"] = dosage
        else:
            r["dosage" if kind == "MedicationStatement" else "dosageInstruction"] = [dosage]
    return [r, *extra]


def _any_value_set_matches(record: Any) -> bool:
    for registry in _ENGINE.ruleset.registries.values():
        for vs in registry:
            for exp in record.exposures:
                if vs.match_medication(exp.medication, exp.notes)[0]:
                    return True
            for fact in (*record.conditions, *record.observations):
                if vs.match_concept_codings(fact.codings, fact.texts)[0]:
                    return True
            for obs in record.observations:
                for comp in obs.components:
                    if vs.match_concept_codings(comp.codings, ())[0]:
                        return True
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=st.one_of(observations().map(lambda r: [r]), conditions().map(lambda r: [r]), medications()))
def test_whatever_a_value_set_matches_in_a_resource_is_a_mention(resources: list[Resource]) -> None:
    """Normalise the resource (every fact: tracing) and match it against every value set of the pack."""
    doc = read_any(bundle(patient(), *resources), "<input>")
    prepared = _ENGINE.prepare_input(doc, trace=True).patients[0]
    assert prepared.record is not None, [e.render() for e in prepared.errors]
    record = prepared.record
    index = ReferenceIndex(doc.entries)
    screened = next(e for e in doc.entries if e.resource_type in SCREENED_TYPES)
    if _any_value_set_matches(record):
        assert _mentions(screened, index, _ENGINE.terms), json.dumps(resources)
    # the fast walk and the readable one agree
    resource = resources[0]
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


def test_normalisation_reads_text_only_under_keys_the_mention_walk_reads() -> None:
    # every text a value set can match comes from a text_field(...) call in normalisation; its
    # path ends with the element read. A new source (say patientInstruction) must be walked too.
    folder = Path(normalize.__file__).parent
    tails: dict[str, set[str]] = {}
    for source in folder.glob("*.py"):
        for arg in re.findall(r"(?<!def )text_field\(\s*([^,]+),", source.read_text(encoding="utf-8")):
            literal = re.search(r"""["']([^"']*)["']\s*$""", arg.strip())
            tail = re.split(r"[.\]]", literal.group(1))[-1] if literal else f"<{arg.strip()}>"
            tails.setdefault(tail, set()).add(source.name)
    walked = {t for t in tails if is_term_key(t)}
    # value[x] strings are read through a variable key ("valueString"), CarePlan texts are not screened
    assert set(tails) - walked == {"<key>", "title", "description"}, tails
    assert tails["title"] == tails["description"] == {"clinical.py"}
