"""Differential test: the durable backend against the python backend on randomised patients.

Hypothesis builds synthetic patients: kratom, serotonergic, opioid, benzodiazepine and other
exposures with random resource types, statuses and dates, reviews present or absent, reported
use in social history, and a care plan. Their entries are shuffled. Both backends must give
identical outcomes. That is checked with the bundled pack, whatever rules it holds, and with a
purpose-built pack that uses every part of the ``when`` language: nested any/all/not, counts
with both bounds, overlaps, ``when``-based escalations and activities, and finding criteria
read across rule layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careplan_rules import Engine
from careplan_rules.engine.backends.durable import DurableBackend, import_problem
from tests.factories import RXNORM, SNOMED, bundle, rx

pytestmark = [
    pytest.mark.durable,
    pytest.mark.skipif(import_problem() is not None, reason=str(import_problem())),
]
NOW = "2026-06-01T12:00:00Z"
TODAY = date(2026, 6, 1)
Resource = dict[str, Any]

DRUGS: dict[str, list[Resource]] = {
    "kratom": [
        {"text": "Kratom powder 3 g daily"},
        {"text": "kratom capsules"},
        {"coding": [{"system": "http://careplan-rules.org/CodeSystem/botanicals", "code": "kratom"}]},
        {"text": "7-OH tablets (7-hydroxymitragynine)"},
    ],
    "serotonergic": [rx("36437", "sertraline"), rx("4493", "fluoxetine"), rx("39786", "venlafaxine")],
    "maoi": [rx("8123", "phenelzine")],
    "opioid": [rx("7804", "oxycodone"), rx("7052", "morphine"), rx("10689", "tramadol"), rx("6813", "methadone")],
    "benzodiazepine": [rx("596", "alprazolam"), rx("6470", "lorazepam"), rx("3322", "diazepam")],
    "other": [rx("25480", "gabapentin"), rx("29046", "lisinopril"), rx("6809", "metformin")],
}
STATEMENT_STATUSES = ["active", "active", "completed", "stopped", "on-hold", "entered-in-error", "intended"]
REQUEST_STATUSES = ["active", "active", "completed", "stopped", "on-hold", "cancelled", "entered-in-error", "draft"]


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


@st.composite
def medication(draw: st.DrawFn, index: int) -> Resource:
    kind = draw(st.sampled_from(sorted(DRUGS)))
    concept = draw(st.sampled_from(DRUGS[kind]))
    start = draw(st.integers(0, 500))
    rid = f"m{index}"
    if draw(st.booleans()):
        r: Resource = {
            "resourceType": "MedicationStatement",
            "id": rid,
            "status": draw(st.sampled_from(STATEMENT_STATUSES)),
            "medicationCodeableConcept": concept,
            "subject": {"reference": "Patient/p1"},
        }
        end = draw(st.none() | st.integers(0, start))
        if end is None and draw(st.booleans()):
            r["effectiveDateTime"] = day(start)
        else:
            r["effectivePeriod"] = {"start": day(start), **({"end": day(end)} if end is not None else {})}
        if draw(st.booleans()):
            r["dateAsserted"] = day(draw(st.integers(0, start)))
        return r
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": draw(st.sampled_from(REQUEST_STATUSES)),
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": "Patient/p1"},
        "authoredOn": day(start),
    }


@st.composite
def review(draw: st.DrawFn, index: int, targets: list[str]) -> Resource:
    when = day(draw(st.integers(0, 500))) + "T09:00:00Z"
    who = draw(st.sampled_from(["Practitioner/dr1", "PractitionerRole/pr1", "Patient/p1"]))
    if draw(st.booleans()):
        return {
            "resourceType": "Provenance",
            "id": f"prov{index}",
            "target": [{"reference": draw(st.sampled_from([*targets, "CarePlan/cp1"]))}],
            "recorded": when,
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": draw(st.sampled_from(["verifier", "author", "informant"])),
                            }
                        ]
                    },
                    "who": {"reference": who},
                }
            ],
        }
    return {
        "resourceType": "Procedure",
        "id": f"proc{index}",
        "status": draw(st.sampled_from(["completed", "completed", "in-progress"])),
        "code": {"coding": [{"system": SNOMED, "code": draw(st.sampled_from(["428191000124101", "182836005"]))}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": when,
        "performer": [{"actor": {"reference": who}}],
    }


@st.composite
def shuffled_patients(draw: st.DrawFn) -> Resource:
    resources: list[Resource] = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "gender": draw(st.sampled_from(["female", "male"])),
            "birthDate": day(draw(st.integers(15 * 365, 80 * 365))),
        }
    ]
    meds = [draw(medication(i)) for i in range(draw(st.integers(0, 7)))]
    resources += meds
    targets = [f"{m['resourceType']}/{m['id']}" for m in meds] or ["MedicationStatement/none"]
    resources += [draw(review(i, targets)) for i in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        resources.append(
            {
                "resourceType": "Observation",
                "id": "social",
                "status": draw(st.sampled_from(["final", "entered-in-error"])),
                "code": {"text": "Herbal or botanical supplement use"},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": day(draw(st.integers(0, 200))),
                "valueString": draw(st.sampled_from(["ketum tea most mornings", "denies kratom use", "chamomile"])),
            }
        )
    if draw(st.booleans()):
        resources.append(
            {
                "resourceType": "CarePlan",
                "id": "cp1",
                "status": draw(st.sampled_from(["active", "completed", "draft"])),
                "intent": "plan",
                "subject": {"reference": "Patient/p1"},
                "title": "Chronic pain plan",
            }
        )
    return bundle(*draw(st.permutations(resources)))


# --- a pack that exercises the whole when language ------------------------------------------------

PACK = "apiVersion: careplan-rules/v1\nkind: Pack\nid: whenprobe\nversion: 0.0.1\ntitle: when probe\n"


def valueset(vid: str, codes: dict[str, str]) -> str:
    concepts = "\n".join(f'      - {{code: "{c}", display: {d}}}' for c, d in codes.items())
    return (
        f"apiVersion: careplan-rules/v1\nkind: ValueSet\nid: {vid}\nversion: '1'\ntitle: {vid}\n"
        f"include:\n  - system: {RXNORM}\n    level: ingredient\n    concepts:\n{concepts}\n"
    )


def rule(rid: str, criteria: str, when: str, extra: str = "") -> str:
    return (
        f"apiVersion: careplan-rules/v1\nkind: Rule\nid: {rid}\nversion: 1.0.0\nstatus: active\ntitle: {rid}\n"
        f"description: probe\nmetadata: {{evidence_level: low}}\ncriteria:\n{criteria}when: {when}\n"
        f"severity: low\nindicator: info\n{extra}"
        "outputs:\n  summary: fired\n  detail: probe\n"
    )


EXPOSURES = "".join(
    f"  {name}:\n    exposure: {{medication: {{in: {name}}}, lookback: {lookback}}}\n"
    for name, lookback in (("ssri", "P90D"), ("opioid", "P90D"), ("benzo", "P90D"))
)
MIX = rule(
    "mix",
    EXPOSURES,
    "{any: [{all: [ssri, opioid]}, {all: [benzo, {not: ssri}]}, {count: {of: opioid, at_least: 2}}]}",
    "escalate:\n"
    "  - when: {not: {any: [ssri, {count: {of: benzo, at_most: 1}}]}}\n    severity: high\n    reason: r0\n"
    "  - when: {all: [opioid, benzo]}\n    indicator: critical\n    reason: r1\n"
    "  - when: {not: {all: [opioid, {not: benzo}]}}\n    severity: moderate\n    reason: r2\n"
    "outputs_placeholder\n",
)
MIX = MIX.replace(
    "outputs_placeholder\noutputs:\n  summary: fired\n  detail: probe\n",
    "outputs:\n  summary: fired\n  detail: probe\n  careplan_activities:\n"
    "    - {id: a0, title: a0, when: {not: {count: {of: opioid, at_least: 1, at_most: 2}}}}\n"
    "    - {id: a1, title: a1, when: {any: [benzo, {not: opioid}]}}\n"
    "    - {id: a2, title: a2}\n",
)
OVERLAP = rule(
    "overlap",
    "  a:\n    exposure: {medication: {in: opioid}, lookback: P2Y}\n"
    "  b:\n    exposure: {medication: {in: benzo}, lookback: P2Y}\n",
    "{any: [{overlaps: [a, b], within: P30D}, {all: [{count: {of: a, at_least: 3}}, {not: b}]}]}",
    "escalate:\n  - when: {not: {overlaps: [a, b]}}\n    severity: moderate\n    reason: apart\n",
)
LAYERED = rule(
    "layered",
    "  found:\n    finding: {rules: [mix, overlap]}\n" + EXPOSURES,
    "{all: [found, {not: {all: [ssri, benzo]}}]}",
    "escalate:\n  - inherit: found\n    reason: inherited\n",
)
FILES = {
    "pack.yaml": PACK,
    "valuesets/ssri.yaml": valueset("ssri", {"36437": "sertraline", "4493": "fluoxetine", "39786": "venlafaxine"}),
    "valuesets/opioid.yaml": valueset(
        "opioid", {"7804": "oxycodone", "7052": "morphine", "10689": "tramadol", "6813": "methadone"}
    ),
    "valuesets/benzo.yaml": valueset("benzo", {"596": "alprazolam", "6470": "lorazepam", "3322": "diazepam"}),
    "mix.rule.yaml": MIX,
    "overlap.rule.yaml": OVERLAP,
    "layered.rule.yaml": LAYERED,
}


@pytest.fixture(scope="module")
def engines(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Engine, Engine]]]:
    root = tmp_path_factory.mktemp("whenprobe")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    probe = Engine.from_paths(root)
    pairs = [(engine, Engine(engine.packs, backend="durable")), (probe, Engine(probe.packs, backend="durable"))]
    yield pairs
    for _, durable in pairs:
        assert isinstance(durable.backend, DurableBackend)
        durable.backend.close()


def compare(pairs: list[tuple[Engine, Engine]], data: Resource) -> None:
    for python, durable in pairs:
        a = python.evaluate(data, now=NOW, on_error="collect", trace=True)
        b = durable.evaluate(data, now=NOW, on_error="collect", trace=True)
        for x, y in zip(a, b, strict=True):
            assert x.errors == y.errors
            assert x.outcomes == y.outcomes
        assert a.to_json() == b.to_json()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=shuffled_patients())
def test_backends_agree_on_random_shuffled_patients(engines: list[tuple[Engine, Engine]], data: Resource) -> None:
    compare(engines, data)


def test_the_probe_pack_fires_every_decision(engines: list[tuple[Engine, Engine]]) -> None:
    """Guard the differential test against a pack in which nothing interesting ever fires."""
    probe_python, probe_durable = engines[1]
    data = bundle(
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-01-01"},
        *(
            {
                "resourceType": "MedicationRequest",
                "id": rid,
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": rx(code),
                "subject": {"reference": "Patient/p1"},
                "authoredOn": "2026-05-01",
            }
            for rid, code in (("o1", "7804"), ("o2", "7052"), ("b1", "596"))
        ),
    )
    compare([(probe_python, probe_durable)], data)
    result = probe_durable.evaluate(data, now=NOW)[0]
    assert {f.rule for f in result.findings} == {"mix", "overlap", "layered"}
    mix = result.finding("mix")
    assert mix is not None and (mix.severity, mix.indicator) == ("moderate", "critical")
    layered = result.finding("layered")
    assert layered is not None and layered.indicator == "critical"  # inherited across layers


def test_probe_rules_span_two_layers(engines: list[tuple[Engine, Engine]]) -> None:
    durable = engines[1][1]
    assert isinstance(durable.backend, DurableBackend)
    program, _ = durable.backend._program(durable.ruleset)
    layers = [{durable.ruleset.rules[i].id for i in layer} for layer in program.layers]
    assert layers == [{"mix", "overlap"}, {"layered"}]
