"""The durable backend as a whole: selection, install errors, and identical outcomes to python.

Every bundled example and every rule test case runs on both backends; outcomes (criteria, grade,
escalations, implicated records, activities) and the rendered output must be identical.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from careplan_rules import Engine, RuleLoadError
from careplan_rules.cli.main import cli
from careplan_rules.engine.backends.durable import DurableBackend, import_problem
from tests.factories import EXAMPLES, bundle, iter_examples, kratom, med_request, patient, rx, sertraline

pytestmark = [
    pytest.mark.durable,
    pytest.mark.skipif(import_problem() is not None, reason=str(import_problem())),
]
NOW = "2026-06-01T12:00:00Z"


@pytest.fixture(scope="module")
def durable(engine: Engine) -> Iterator[Engine]:
    durable = Engine(engine.packs, backend="durable")
    yield durable
    assert isinstance(durable.backend, DurableBackend)
    durable.backend.close()


def assert_same(python: Engine, durable: Engine, data: object, **kwargs: object) -> None:
    a = python.evaluate(data, now=NOW, on_error="collect", trace=True, **kwargs)  # type: ignore[arg-type]
    b = durable.evaluate(data, now=NOW, on_error="collect", trace=True, **kwargs)  # type: ignore[arg-type]
    assert [p.patient for p in a] == [p.patient for p in b]
    for x, y in zip(a, b, strict=True):
        assert x.errors == y.errors, y.errors
        assert x.outcomes == y.outcomes
    assert a.to_json() == b.to_json()


def test_selected_by_name(durable: Engine) -> None:
    assert durable.backend.name == "durable"


@pytest.mark.parametrize("path", list(iter_examples()), ids=lambda p: p.name)
def test_every_example_gives_identical_outcomes(engine: Engine, durable: Engine, path: object) -> None:
    assert_same(engine, durable, path)


def test_every_rule_test_case_gives_identical_outcomes(engine: Engine) -> None:
    runner = pytest.importorskip("careplan_rules.testing.runner", reason="the rule-test runner is not available")
    python_run = runner.run_tests(engine.packs, backend="python")
    durable_run = runner.run_tests(engine.packs, backend="durable")
    assert python_run.results, "the bundled packs have rule tests"
    for a, b in zip(python_run.results, durable_run.results, strict=True):
        assert (a.rule, a.name) == (b.rule, b.name)
        assert (a.status, a.message) == (b.status, b.message), f"{a.rule}: {a.name}"
        assert a.outcome == b.outcome, f"{a.rule}: {a.name}"


def test_shuffled_fact_order_never_changes_the_answer(engine: Engine, durable: Engine) -> None:
    resources = [patient(), kratom(), sertraline(), med_request("t1", rx("10689", "tramadol")), kratom("k2", "ketum")]
    for shift in range(len(resources)):
        assert_same(engine, durable, bundle(*resources[shift:], *resources[:shift]))


def test_a_patient_with_no_findings(engine: Engine, durable: Engine) -> None:
    # durable_rules crashed on deleting a session in which nothing fired (research D2)
    assert_same(engine, durable, bundle(patient()))
    assert durable.evaluate(bundle(patient()), now=NOW)[0].findings == ()


def test_threads_share_one_durable_engine(engine: Engine, durable: Engine) -> None:
    inputs = [
        bundle(
            patient(f"p{i}"),
            kratom(f"k{i}", subject=f"Patient/p{i}"),
            *([sertraline(f"s{i}", subject=f"Patient/p{i}")] if i % 2 else []),
        )
        for i in range(24)
    ]
    expected = [engine.evaluate(d, now=NOW).to_json() for d in inputs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda d: durable.evaluate(d, now=NOW).to_json(), inputs * 3))
    assert got == expected * 3


def test_cli_evaluate_backend_durable_matches_python(engine: Engine) -> None:
    path = EXAMPLES / "kratom-maoi-r5.json"
    out = CliRunner().invoke(cli, ["evaluate", str(path), "--now", NOW, "--backend", "durable"])
    assert out.exit_code == 0, out.output
    expected = engine.evaluate(path, now=NOW, source=str(path)).to_dict()
    assert json.loads(out.stdout)["results"] == expected["results"]


def test_missing_extension_is_a_one_line_error_and_python_is_unaffected(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "durable_rules_engine", None)  # import now raises ImportError
    with pytest.raises(RuleLoadError) as info:
        Engine(engine.packs, backend="durable")
    message = str(info.value)
    assert "\n" not in message
    assert "pip install 'careplan-rules[durable]'" in message
    assert "3.11 or 3.12" in message and "C compiler" in message
    assert Engine(engine.packs).evaluate(bundle(patient(), kratom()), now=NOW)[0].finding("kratom-use") is not None


def test_python_3_13_is_named_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "durable_rules_engine", None)
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    with pytest.raises(RuleLoadError, match=r"does not import on Python 3\.13 or later.*careplan-rules\[durable\]"):
        DurableBackend()


def test_compiled_once_per_rule_set(durable: Engine) -> None:
    backend = durable.backend
    assert isinstance(backend, DurableBackend)
    before = backend._program(durable.ruleset)
    durable.evaluate(bundle(patient(), kratom()), now=NOW)
    assert backend._program(durable.ruleset) == before
