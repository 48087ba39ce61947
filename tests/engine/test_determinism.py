"""Evaluation is a pure, deterministic function of (data, now), safe to share across threads."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from careplan_rules import Engine
from tests.factories import EXAMPLES, bundle, kratom, med_request, patient, rx, sertraline


def shuffled(data: dict[str, Any], seed: int) -> dict[str, Any]:
    entries = list(data["entry"])
    random.Random(seed).shuffle(entries)
    return {**data, "entry": entries}


def test_fact_order_never_changes_the_output(engine: Engine) -> None:
    data = bundle(
        patient(), kratom(), sertraline(), med_request("t1", rx("10689", "tramadol")), kratom("k2", "ketum tea")
    )
    baseline = engine.evaluate(data, now="2026-06-01").to_json()
    for seed in range(10):
        assert engine.evaluate(shuffled(data, seed), now="2026-06-01").to_json() == baseline


def test_same_input_same_ids_across_engines() -> None:
    data = json.loads((EXAMPLES / "kratom-sertraline.json").read_text())
    a = Engine.default().evaluate(data, now="2026-06-01T12:00:00Z").to_dict()
    b = Engine.from_paths(Engine.default().packs[0].root).evaluate(data, now="2026-06-01T12:00:00Z").to_dict()
    assert a == b
    ids = [d["id"] for d in a["results"][0]["detectedIssues"]]
    assert len(ids) == len(set(ids)) == len(a["results"][0]["findings"])


def test_now_changes_what_is_current(engine: Engine) -> None:
    data = bundle(
        patient(), kratom(status="completed", effective={"start": "2026-01-01", "end": "2026-03-01"}), sertraline()
    )
    assert engine.evaluate(data, now="2026-04-01")[0].finding("kratom-serotonergic") is not None
    assert engine.evaluate(data, now="2026-09-01")[0].finding("kratom-serotonergic") is None


def test_threads_share_one_engine(engine: Engine) -> None:
    inputs = [
        bundle(
            patient(f"p{i}"),
            kratom(f"k{i}", subject=f"Patient/p{i}"),
            sertraline(f"s{i}", subject=f"Patient/p{i}") if i % 2 else patient(f"x{i}"),
        )
        for i in range(40)
    ]
    expected = [engine.evaluate(d, now="2026-06-01").to_json() for d in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda d: engine.evaluate(d, now="2026-06-01").to_json(), inputs * 3))
    assert got == expected * 3


def test_findings_are_sorted_critical_first(engine: Engine) -> None:
    data = json.loads((EXAMPLES / "kratom-maoi-r5.json").read_text())
    findings = engine.evaluate(data, now="2026-06-01T12:00:00Z")[0].findings
    keys = [f.sort_key() for f in findings]
    assert keys == sorted(keys)
    assert findings[0].indicator == "critical"
