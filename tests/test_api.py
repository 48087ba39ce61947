"""The Python API: Engine construction, input forms, results, typed errors, public names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import careplan_rules
from careplan_rules import (
    CarePlanRulesError,
    Engine,
    EvaluationError,
    FhirInputError,
    RuleLoadError,
)
from tests.factories import EXAMPLES, bundle, kratom, patient, sertraline

DATA = bundle(patient(), kratom(), sertraline())


def test_public_api_is_sorted_and_complete() -> None:
    assert careplan_rules.__all__ == sorted(careplan_rules.__all__)
    for name in careplan_rules.__all__:
        assert hasattr(careplan_rules, name), name


def test_default_engine_is_cached_and_lists_rules() -> None:
    assert Engine.default() is Engine.default()
    assert {"kratom-use", "kratom-serotonergic", "missing-clinician-review"} <= set(Engine.default().rules)


@pytest.mark.parametrize(
    "data",
    [
        DATA,
        json.dumps(DATA),
        json.dumps(DATA).encode(),
        DATA["entry"] and [e["resource"] for e in DATA["entry"]],
    ],
    ids=["dict", "json", "bytes", "list"],
)
def test_evaluate_accepts_every_input_form(engine: Engine, data: object) -> None:
    results = engine.evaluate(data, now="2026-06-01")
    assert next(f.rule for f in results[0].findings) == "kratom-serotonergic"


def test_evaluate_accepts_paths(engine: Engine) -> None:
    path = EXAMPLES / "kratom-sertraline.json"
    by_path = engine.evaluate(path, now="2026-06-01T12:00:00Z")
    by_str = engine.evaluate(str(path), now="2026-06-01T12:00:00Z")
    assert by_path.to_dict() == by_str.to_dict()
    assert by_path[0].source == str(path)


def test_now_forms(engine: Engine) -> None:
    a = engine.evaluate(DATA, now="2026-06-01T12:00:00Z").to_dict()
    b = engine.evaluate(DATA, now=datetime(2026, 6, 1, 12, tzinfo=UTC)).to_dict()
    c = engine.evaluate(DATA, now=datetime(2026, 6, 1, 12)).to_dict()  # naive: UTC
    assert a == b == c
    with pytest.raises(ValueError, match="not an ISO-8601"):
        engine.evaluate(DATA, now="next tuesday")


def test_results_shape_and_json(engine: Engine) -> None:
    results = engine.evaluate(DATA, now="2026-06-01")
    doc = json.loads(results.to_json())
    assert doc["engine"] == {"name": "careplan-rules", "version": careplan_rules.__version__}
    assert doc["packs"] == [{"id": "kratom-safety", "version": "1.1.0"}]
    patient_result = results[0]
    assert patient_result.patient == "Patient/p1" and patient_result.ok
    assert json.loads(patient_result.to_json())["patient"] == "Patient/p1"
    assert results.findings == patient_result.findings


def test_errors_are_typed(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(FhirInputError):
        engine.evaluate("{not json", now="2026-06-01")
    bad = bundle(patient(), kratom(effective="yesterday"))
    with pytest.raises(FhirInputError) as info:
        engine.evaluate(bad, now="2026-06-01")
    assert info.value.results and not info.value.results[0].ok
    assert issubclass(EvaluationError, CarePlanRulesError)
    with pytest.raises(RuleLoadError):
        Engine.from_paths(tmp_path)


def test_collect_mode_returns_errors_in_results(engine: Engine) -> None:
    data = bundle(
        patient("a"), patient("b"), kratom(subject="Patient/a"), kratom("k2", subject="Patient/b", effective="bad")
    )
    results = engine.evaluate(data, now="2026-06-01", on_error="collect")
    by_patient = {r.patient: r for r in results}
    assert by_patient["Patient/a"].ok and by_patient["Patient/a"].findings
    assert not by_patient["Patient/b"].ok and not by_patient["Patient/b"].findings


def test_rule_errors_are_never_silent(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from careplan_rules.engine import criteria

    def boom(self: object, ctx: object, results: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(criteria.ExposureCriterion, "evaluate", boom)
    with pytest.raises(EvaluationError, match="failed for Patient/p1: ZeroDivisionError"):
        engine.evaluate(DATA, now="2026-06-01")


def test_draft_rules_are_off_unless_asked(tmp_path: Path) -> None:
    from tests.loader.minimal import RULE, files

    root = tmp_path / "pack"
    for rel, text in files(rule=RULE.replace("status: active", "status: draft")).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert Engine.from_paths(root).rules == ()
    assert Engine.from_paths(root, include_draft=True).rules == ("demo",)
