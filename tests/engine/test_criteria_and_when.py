"""Criterion kinds and the ``when`` language, on a small purpose-built pack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules import Engine
from tests.factories import LOINC, RXNORM, SNOMED, bundle, med_request, med_statement, patient, rx

PACK = """\
apiVersion: careplan-rules/v1
kind: Pack
id: probe
version: 0.0.1
title: Probe pack
"""
VALUESETS = {
    "valuesets/ssri.yaml": f"""\
apiVersion: careplan-rules/v1
kind: ValueSet
id: ssri
version: "1"
title: SSRIs
include:
  - system: {RXNORM}
    level: ingredient
    concepts:
      - {{code: "36437", display: sertraline}}
      - {{code: "4493", display: fluoxetine}}
      - {{code: "2556", display: citalopram}}
""",
    "valuesets/depression.yaml": f"""\
apiVersion: careplan-rules/v1
kind: ValueSet
id: depression
version: "1"
title: Depression
include:
  - system: {SNOMED}
    concepts: [{{code: "35489007", display: Depressive disorder}}]
  - system: http://hl7.org/fhir/sid/icd-10-cm
    concepts: [{{code: "F32.A", display: "Depression, unspecified"}}]
""",
    "valuesets/phq9.yaml": f"""\
apiVersion: careplan-rules/v1
kind: ValueSet
id: phq9
version: "1"
title: PHQ-9 total
include:
  - system: {LOINC}
    concepts: [{{code: "44261-6", display: PHQ-9 total score}}]
""",
}


def rule(rid: str, criteria: str, when: str, extra: str = "", summary: str = "fired") -> str:
    return f"""\
apiVersion: careplan-rules/v1
kind: Rule
id: {rid}
version: 1.0.0
status: active
title: {rid}
description: probe
metadata: {{evidence_level: low}}
params:
  lookback: P90D
  threshold: 10
  many: 2
criteria:
{criteria}
when: {when}
severity: low
indicator: info
{extra}
outputs:
  summary: "{summary}"
  detail: probe
"""


SSRI = "  ssri_use:\n    exposure: {medication: {in: ssri}, lookback: $lookback}\n"
DEP = "  dep:\n    condition: {code: {in: depression}}\n"
PHQ = "  phq:\n    observation: {code: {in: phq9}, value: {gte: $threshold}, within: P6M, latest: true}\n"
YOUNG = "  young:\n    patient: {age: {gte: 18, lt: 26}}\n"

RULES = {
    "count.rule.yaml": rule(
        "count", SSRI, "{count: {of: ssri_use, at_least: $many}}", summary="{ssri_use.count} SSRIs"
    ),
    "any-not.rule.yaml": rule("any-not", SSRI + DEP, "{any: [dep, {not: ssri_use}]}"),
    "phq.rule.yaml": rule("phq", PHQ, "phq", summary="PHQ-9 {phq.value}"),
    "young.rule.yaml": rule("young", YOUNG + DEP, "{all: [young, dep]}"),
    "overlap.rule.yaml": rule(
        "overlap",
        "  a:\n    exposure: {medication: {in: ssri}, lookback: P2Y}\n"
        "  b:\n    exposure: {medication: {in: ssri}, lookback: P2Y}\n",
        "{overlaps: [a, b]}",
    ),
    "escalating.rule.yaml": rule(
        "escalating",
        SSRI,
        "ssri_use",
        extra=(
            "escalate:\n"
            "  - when: {count: {of: ssri_use, at_least: 2}}\n"
            "    severity: moderate\n"
            "    reason: two SSRIs\n"
            "  - when: {count: {of: ssri_use, at_least: 3}}\n"
            "    severity: high\n"
            "    indicator: critical\n"
            "    reason: three SSRIs ({ssri_use.medications})\n"
        ),
    ),
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root: Path = tmp_path_factory.mktemp("probe")
    for rel, text in {"pack.yaml": PACK, **VALUESETS, **RULES}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return Engine.from_paths(root)


@pytest.fixture
def run(probe: Engine) -> Callable[..., set[str]]:
    def go(*resources: dict[str, Any], now: str = "2026-06-01T12:00:00Z", birth: str = "1980-01-01") -> set[str]:
        result = probe.evaluate(bundle(patient(birth=birth), *resources), now=now)[0]
        assert result.ok, result.errors
        return {f.rule for f in result.findings}

    return go


def cond(code: str = "35489007", status: str = "active", **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Condition",
        "id": kw.pop("rid", "c1"),
        "code": {"coding": [{"system": kw.pop("system", SNOMED), "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
    }
    r.update(kw)
    return r


def phq(value: float, when: str, rid: str = "o1", status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": "44261-6"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"},
    }


def test_count_distinct_drugs_not_records(run: Callable[..., set[str]]) -> None:
    two_records_one_drug = (med_request("a", rx("36437")), med_statement("b", rx("36437", "sertraline")))
    assert "count" not in run(*two_records_one_drug)
    assert "count" in run(med_request("a", rx("36437")), med_request("c", rx("4493")))


def test_any_and_not(run: Callable[..., set[str]]) -> None:
    assert "any-not" in run()  # no SSRI: the not-branch holds
    assert "any-not" not in run(med_request("a", rx("36437")))
    assert "any-not" in run(med_request("a", rx("36437")), cond())


def test_condition_status(run: Callable[..., set[str]]) -> None:
    assert "any-not" in run(
        med_request("a", rx("36437")), cond(system="http://hl7.org/fhir/sid/icd-10-cm", code="F32.A")
    )
    assert "any-not" not in run(med_request("a", rx("36437")), cond(status="resolved"))
    refuted = cond(
        verificationStatus={
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]
        }
    )
    assert "any-not" not in run(med_request("a", rx("36437")), refuted)
    abated = cond(abatementDateTime="2026-01-01")
    del abated["clinicalStatus"]
    assert "any-not" not in run(med_request("a", rx("36437")), abated)


def test_observation_threshold_window_and_latest(run: Callable[..., set[str]]) -> None:
    assert "phq" in run(phq(12, "2026-05-01"))
    assert "phq" not in run(phq(9, "2026-05-01"))
    assert "phq" not in run(phq(15, "2025-05-01"))  # outside P6M
    assert "phq" not in run(phq(15, "2026-03-01", "o1"), phq(4, "2026-05-01", "o2"))  # latest is 4
    assert "phq" not in run(phq(15, "2026-05-01", status="entered-in-error"))


def test_patient_age_window(run: Callable[..., set[str]]) -> None:
    assert "young" in run(cond(), birth="2004-06-01")  # 22
    assert "young" not in run(cond(), birth="1990-06-01")  # 36
    assert "young" not in run(cond(), birth="2000-06-01")  # 26 today: lt 26 excludes
    assert "young" in run(cond(), birth="2000-06-02")  # 26 tomorrow, 25 today


def test_overlaps_join(run: Callable[..., set[str]]) -> None:
    a = med_statement("a", rx("36437"), status="completed", effective={"start": "2025-01-01", "end": "2025-03-01"})
    b = med_statement("b", rx("4493"), status="completed", effective={"start": "2025-02-01", "end": "2025-05-01"})
    c = med_statement("c", rx("2556"), status="completed", effective={"start": "2025-07-01", "end": "2025-08-01"})
    assert "overlap" in run(a, b)
    assert "overlap" not in run(a, c)


def test_escalations_are_cumulative_and_reported(probe: Engine) -> None:
    data = bundle(patient(), med_request("a", rx("36437")), med_request("b", rx("4493")), med_request("c", rx("2556")))
    finding = probe.evaluate(data, now="2026-06-01")[0].finding("escalating")
    assert finding is not None
    assert (finding.severity, finding.indicator) == ("high", "critical")
    assert [e.reason for e in finding.escalations] == [
        "two SSRIs",
        "three SSRIs (sertraline, fluoxetine, citalopram)",
    ]


def test_templates_render_counts_and_values(probe: Engine) -> None:
    data = bundle(patient(), med_request("a", rx("36437")), med_request("b", rx("4493")), phq(14, "2026-05-01"))
    result = probe.evaluate(data, now="2026-06-01")[0]
    assert result.finding("count").summary == "2 SSRIs"  # type: ignore[union-attr]
    assert result.finding("phq").summary == "PHQ-9 14"  # type: ignore[union-attr]


def test_param_overrides(probe: Engine, tmp_path: Path) -> None:
    root = next(iter(probe.packs)).root
    strict = Engine.from_paths(root, params={"phq": {"threshold": 15}})
    data = bundle(patient(), phq(12, "2026-05-01"))
    assert strict.evaluate(data, now="2026-06-01")[0].finding("phq") is None
    with pytest.raises(Exception, match="no param 'nope'"):
        Engine.from_paths(root, params={"phq": {"nope": 1}})
