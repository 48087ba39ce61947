"""The rule-test runner: outcomes, assertions, fixtures, shorthands, coverage, reports, CLI, pytest."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from careplan_rules import load_pack
from careplan_rules.cli.main import cli
from careplan_rules.testing.coverage import coverage
from careplan_rules.testing.runner import ERROR, FAIL, PASS, TODO, TODO_PASSES, run_tests
from tests.loader.minimal import RULE, files

TESTS = """\
apiVersion: careplan-rules/v1
kind: RuleTest
rule: demo
now: "2026-06-01"
fixtures: [fixtures/f.yaml]
patient: {fixture: adult}
cases:
  - name: sertraline by code fires
    expect: fire
    resources:
      - {resourceType: MedicationStatement, medication: "RXNORM#36437 sertraline", effective: "2026-05-01"}
    assert:
      severity: moderate
      summary: {contains: sertraline, max_length: 139}
      implicated: [MedicationStatement/r1]
      matched_by: {MedicationStatement/r1: code}
  - name: free text through a fixture
    expect: fire
    resources: [{fixture: kratom_text}]
  - name: nothing on record
    expect: no-fire
  - name: stopped long ago
    expect: no-fire
    resources:
      - {resourceType: MedicationStatement, status: completed, medication: {text: kratom}, effective: "2020-01-01 - 2020-02-01"}
  - name: a known gap
    expect: todo-fire
    reason: not modelled yet
  - name: each fixture variant
    expect: fire
    each_fixture: [kratom_text, sertraline_text]
"""
FIXTURES = """\
apiVersion: careplan-rules/v1
kind: Fixtures
fixtures:
  adult: {resourceType: Patient, id: pt, birthDate: "1980-01-01"}
  kratom_text: {resourceType: MedicationStatement, medication: {text: Kratom tea}, effective: "2026-05-01"}
  sertraline_text: {resourceType: MedicationRequest, medication: {text: Zoloft 50 mg}, authoredOn: "2026-05-01"}
"""


@pytest.fixture
def pack_dir(tmp_pack: Callable[..., Path]) -> Path:
    return tmp_pack(files(**{"demo.test.yaml": TESTS, "fixtures/f.yaml": FIXTURES}))


def statuses(root: Path, **kw: object) -> dict[str, str]:
    run = run_tests([load_pack(root)], **kw)  # type: ignore[arg-type]
    return {r.name: r.status for r in run.results}


def test_outcomes(pack_dir: Path) -> None:
    assert statuses(pack_dir) == {
        "sertraline by code fires": PASS,
        "free text through a fixture": PASS,
        "nothing on record": PASS,
        "stopped long ago": PASS,
        "a known gap": TODO,
        "each fixture variant [kratom_text]": PASS,
        "each fixture variant [sertraline_text]": FAIL,  # the value set has no brand names
    }


def test_failure_shows_expected_actual_and_explanation(pack_dir: Path) -> None:
    run = run_tests([load_pack(pack_dir)], select="sertraline_text")
    (result,) = run.results
    assert result.message == "expected: fire    actual: did not fire"
    assert any("drug_use" in line for line in result.explanation)
    assert any("'Zoloft 50 mg' is not in drugs" in line for line in result.explanation)
    assert result.location.render().endswith("demo.test.yaml:29:11")


def test_assertion_mismatch_is_reported(tmp_pack: Callable[..., Path]) -> None:
    bad = TESTS.replace("severity: moderate", "severity: high").replace(
        "MedicationStatement/r1]", "MedicationStatement/x]"
    )
    root = tmp_pack(files(**{"demo.test.yaml": bad, "fixtures/f.yaml": FIXTURES}))
    (result,) = run_tests([load_pack(root)], select="by code").results
    assert result.status == FAIL
    assert "severity: expected high, actual moderate" in result.message
    assert "implicated: expected ['MedicationStatement/x'], actual ['MedicationStatement/r1']" in result.message


def test_todo_that_passes_is_flagged(tmp_pack: Callable[..., Path]) -> None:
    text = TESTS.replace(
        "  - name: a known gap\n    expect: todo-fire\n    reason: not modelled yet\n",
        "  - name: a known gap\n    expect: todo-fire\n    reason: x\n    resources: [{fixture: kratom_text}]\n",
    )
    root = tmp_pack(files(**{"demo.test.yaml": text, "fixtures/f.yaml": FIXTURES}))
    assert statuses(root, select="known gap") == {"a known gap": TODO_PASSES}


def test_setup_errors_point_into_the_yaml(tmp_pack: Callable[..., Path]) -> None:
    text = TESTS.replace('effective: "2026-05-01"}\n    assert', 'efective: "2026-05-01"}\n    assert')
    root = tmp_pack(files(**{"demo.test.yaml": text, "fixtures/f.yaml": FIXTURES}))
    (result,) = run_tests([load_pack(root)], select="by code").results
    assert result.status == ERROR
    assert "demo.test.yaml:11:84: error CPR-T004: MedicationStatement has no element 'efective'" in result.message
    assert "did you mean 'effective'" in result.message
    text = TESTS.replace("{fixture: kratom_text}]", "{fixture: kratom_txt}]")
    root = tmp_pack(files(**{"demo.test.yaml": text, "fixtures/f.yaml": FIXTURES}), name="p2")
    (result,) = run_tests([load_pack(root)], select="through a fixture").results
    assert "unknown fixture 'kratom_txt'" in result.message and "did you mean 'kratom_text'" in result.message


def test_invalid_fhir_in_a_case_is_positioned(tmp_pack: Callable[..., Path]) -> None:
    text = TESTS.replace('effective: "2026-05-01"}\n    assert', 'effective: "2026-13-01"}\n    assert')
    root = tmp_pack(files(**{"demo.test.yaml": text, "fixtures/f.yaml": FIXTURES}))
    (result,) = run_tests([load_pack(root)], select="by code").results
    assert result.status == ERROR and "CPR-T005" in result.message and "demo.test.yaml:11:" in result.message


def test_expect_error(tmp_pack: Callable[..., Path]) -> None:
    text = (
        TESTS
        + """\
  - name: unresolvable medication reference
    expect: error
    resources:
      - {resourceType: MedicationStatement, medication: "Medication/missing", effective: "2026-05-01"}
    assert: {errors: [CPR-F030]}
"""
    )
    root = tmp_pack(files(**{"demo.test.yaml": text, "fixtures/f.yaml": FIXTURES}))
    assert statuses(root, select="unresolvable") == {"unresolvable medication reference": PASS}


def test_coverage(pack_dir: Path) -> None:
    pack = load_pack(pack_dir)
    run = run_tests([pack])
    (cov,) = coverage([pack], run.results)
    assert (cov.fire, cov.no_fire, cov.todo, cov.failed) == (3, 2, 1, 1)
    assert cov.criteria_true == {"drug_use": True} and cov.criteria_false == {"drug_use": True}
    assert cov.percent == 100.0


def test_cli_text_json_junit(pack_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["test", str(pack_dir)])
    assert out.exit_code == 1
    assert "✘ each fixture variant [sertraline_text]" in out.stdout and "1 failed, 5 passed, 1 todo" in out.stdout
    out = runner.invoke(cli, ["test", str(pack_dir), "-k", "by code", "--format", "json"])
    assert out.exit_code == 0
    doc = json.loads(out.stdout)
    assert doc["summary"]["pass"] == 1 and doc["coverage"][0]["rule"] == "demo"
    junit = tmp_path / "r.xml"
    out = runner.invoke(cli, ["test", str(pack_dir), "--format", "junit", "-o", str(junit)])
    root = ET.fromstring(junit.read_text())
    assert root.get("failures") == "1" and root.get("skipped") == "1"


def test_cli_no_tests_and_unknown_rule(tmp_pack: Callable[..., Path]) -> None:
    runner = CliRunner()
    empty = tmp_pack(files())
    out = runner.invoke(cli, ["test", str(empty)])
    assert out.exit_code == 1 and "CPR-T010: no rule tests found" in out.stderr
    bad = tmp_pack(files(**{"x.test.yaml": TESTS.replace("rule: demo", "rule: dem")}), name="bad")
    out = runner.invoke(cli, ["test", str(bad)])
    assert out.exit_code == 1 and "CPR-T001" in out.stdout and "did you mean 'demo'" in out.stdout


def test_cli_min_coverage(tmp_pack: Callable[..., Path]) -> None:
    only_fire = TESTS.split("  - name: nothing on record")[0]
    root = tmp_pack(files(**{"demo.test.yaml": only_fire, "fixtures/f.yaml": FIXTURES}))
    out = CliRunner().invoke(cli, ["test", str(root), "--min-coverage", "100"])
    assert out.exit_code == 1 and "CPR-T011: coverage 50% is below 100%" in out.stderr


def test_pytest_collects_rule_tests(pytester: pytest.Pytester, pack_dir: Path) -> None:
    for path in pack_dir.rglob("*"):
        if path.is_file():
            target = pytester.path / "pack" / path.relative_to(pack_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    result = pytester.runpytest("pack", "-rs")  # the plugin is loaded through its pytest11 entry point
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*expected: fire    actual: did not fire*", "*todo (todo-fire): not modelled yet*"])


def test_bundled_pack_tests_pass() -> None:
    from careplan_rules import bundled_rules_dir

    packs = [load_pack(p.parent) for p in bundled_rules_dir().rglob("pack.yaml")]
    run = run_tests(packs)
    failed = [(r.rule, r.name, r.message) for r in run.results if r.status in (FAIL, ERROR, TODO_PASSES)]
    assert not run.problems and not failed, failed


def test_rule_text_is_unchanged() -> None:
    assert "id: demo" in RULE
