"""The bundled examples: every one evaluates, and the whole output matches the golden file.

Refresh the golden file after an intended change with ``pytest tests/test_examples.py
--update-golden`` and review the diff like any other change.
"""

from __future__ import annotations

import json

from careplan_rules import Engine
from tests.factories import ROOT, iter_examples

NOW = "2026-06-01T12:00:00Z"
GOLDEN = ROOT / "tests" / "golden" / "examples.json"

EXPECTED = {
    ("kratom-sertraline.json", "Patient/p1"): {"kratom-use", "kratom-serotonergic", "missing-clinician-review"},
    ("kratom-contained-tramadol-fluoxetine.json", "Patient/p2"): {
        "kratom-use",
        "kratom-serotonergic",
        "missing-clinician-review",
    },
    ("kratom-sertraline-reviewed.json", "Patient/p3"): {"kratom-use", "kratom-serotonergic"},
    ("kratom-maoi-r5.json", "Patient/p4"): {"kratom-use", "kratom-serotonergic", "missing-clinician-review"},
    ("two-patients-social-history.json", "Patient/p5a"): {"kratom-use", "missing-clinician-review"},
    ("two-patients-social-history.json", "Patient/p5b"): set(),
    ("kratom-past-and-entered-in-error.json", "Patient/p6"): set(),
    ("kratom-urn-bundled-medication.json", "Patient/7a1e1d0e-2c7e-4d49-9a57-3f7f1f0c0001"): {
        "kratom-use",
        "kratom-serotonergic",
        "missing-clinician-review",
    },
    ("bulk-export-7oh.ndjson", "Patient/p8"): {
        "kratom-use",
        "kratom-serotonergic",
        "missing-clinician-review",
        "kratom-7oh-product",
        "kratom-cns-depressant",
    },
    ("opioid-benzodiazepine-60mme.json", "Patient/p9"): {"opioid-benzodiazepine", "naloxone-offer"},
    ("kratom-opioid-benzodiazepine-r5.json", "Patient/p10"): {
        "kratom-opioid-cns-depressant",
        "opioid-benzodiazepine",
        "naloxone-offer",
        "missing-clinician-review",
    },
    ("kratom-tacrolimus.json", "Patient/p11"): {"kratom-cyp3a-substrate", "kratom-use", "missing-clinician-review"},
    ("depression-young-adult.json", "Patient/p12"): {"depression-support-plan", "kratom-serotonergic", "kratom-use"},
}


def test_every_bundled_rule_fires_in_some_example(engine: Engine) -> None:
    fired_anywhere = set()
    for path in iter_examples():
        for result in engine.evaluate(path, now=NOW):
            fired_anywhere |= {f.rule for f in result.findings}
    assert fired_anywhere == set(engine.rules)


def evaluate_examples(engine: Engine) -> dict[str, object]:
    patients = []
    for path in iter_examples():
        rel = str(path.relative_to(ROOT))
        for result in engine.evaluate(path, now=NOW, source=rel):
            patients.append(result.to_dict())
    return {"now": NOW, "results": patients}


def test_each_example_fires_the_expected_rules(engine: Engine) -> None:
    seen = {}
    for path in iter_examples():
        for result in engine.evaluate(path, now=NOW):
            assert result.ok, [e.render() for e in result.errors]
            seen[(path.name, result.patient)] = {f.rule for f in result.findings}
    for key, rules in EXPECTED.items():
        assert seen.get(key, set()) >= rules, key
    assert set(seen) == set(EXPECTED)


def test_golden_output(engine: Engine, update_golden: bool) -> None:
    current = evaluate_examples(engine)
    if update_golden or not GOLDEN.exists():
        GOLDEN.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    assert json.loads(GOLDEN.read_text()) == current
