"""``careplan-rules evaluate``: formats, inputs, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from careplan_rules.cli.main import cli
from tests.factories import EXAMPLES, bundle, kratom, patient, sertraline

NOW = "2026-06-01T12:00:00Z"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_json_report_matches_the_contract(runner: CliRunner) -> None:
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES / "kratom-sertraline.json"), "--now", NOW])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert set(doc) == {"engine", "now", "packs", "results"}
    result = doc["results"][0]
    assert set(result) >= {"source", "patient", "findings", "carePlan", "detectedIssues", "errors"}
    finding = result["findings"][0]
    assert set(finding) == {
        "rule",
        "ruleVersion",
        "title",
        "severity",
        "indicator",
        "summary",
        "detail",
        "implicated",
        "escalations",
        "evidence",
    }
    assert finding["evidence"][0].keys() >= {"criterion", "resource", "matchedBy", "matched", "valueSet"}


def test_directory_input_and_text_format(runner: CliRunner) -> None:
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES), "--now", NOW, "--format", "text"])
    assert out.exit_code == 0
    assert "kratom-serotonergic" in out.stdout and "result(s)" in out.stdout


def test_fail_on_severity(runner: CliRunner) -> None:
    path = str(EXAMPLES / "kratom-sertraline.json")
    assert runner.invoke(cli, ["evaluate", path, "--now", NOW, "--fail-on", "moderate"]).exit_code == 1
    assert runner.invoke(cli, ["evaluate", path, "--now", NOW, "--fail-on", "high"]).exit_code == 0


def test_stdin_and_ndjson(runner: CliRunner) -> None:
    data = json.dumps(bundle(patient(), kratom(), sertraline()))
    out = runner.invoke(cli, ["evaluate", "-", "--now", NOW], input=data)
    assert out.exit_code == 0 and json.loads(out.stdout)["results"][0]["source"] == "<stdin>"
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES / "bulk-export-7oh.ndjson"), "--now", NOW])
    assert out.exit_code == 0 and json.loads(out.stdout)["results"][0]["findings"]


def test_malformed_json_gives_file_line_col_and_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle",\n "entry": [}\n')
    out = runner.invoke(cli, ["evaluate", str(bad), "--now", NOW, "--format", "text"])
    assert out.exit_code == 2
    assert f"{bad}:2:12: error CPR-F005: malformed JSON" in out.stderr
    assert "Traceback" not in out.output


def test_invalid_fhir_names_the_path(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(bundle(patient(), kratom(effective={"start": "2026-02-30"}))))
    out = runner.invoke(cli, ["evaluate", str(f), "--now", NOW])
    assert out.exit_code == 2
    assert "Bundle.entry[1].resource.effectivePeriod.start" in out.stderr


def test_missing_file_and_bad_options(runner: CliRunner) -> None:
    out = runner.invoke(cli, ["evaluate", "no-such.json"])
    assert out.exit_code == 2 and "no-such.json: error CPR-F002: no such file or directory" in out.stderr
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES), "--now", "someday"])
    assert out.exit_code == 2 and "--now" in out.output
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES), "--format", "xml"])
    assert out.exit_code == 2


def test_broken_rule_pack_is_reported_with_position(runner: CliRunner, tmp_path: Path) -> None:
    from tests.loader.minimal import RULE, files

    root = tmp_path / "pack"
    for rel, text in files(rule=RULE.replace("when: drug_use", "when: drug_usee")).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES), "--rules", str(root)])
    assert out.exit_code == 2
    assert "demo.rule.yaml:17:7: error CPR-E010: criterion 'drug_usee' is not defined" in out.stderr


def test_param_override_and_fhir_and_cards_formats(runner: CliRunner) -> None:
    path = str(EXAMPLES / "kratom-past-and-entered-in-error.json")
    out = runner.invoke(cli, ["evaluate", path, "--now", NOW, "--param", "kratom-use.lookback=P10Y"])
    assert "kratom-use" in {f["rule"] for f in json.loads(out.stdout)["results"][0]["findings"]}
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES / "kratom-sertraline.json"), "--now", NOW, "--format", "fhir"])
    assert json.loads(out.stdout)["resourceType"] == "Bundle"
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES / "kratom-sertraline.json"), "--now", NOW, "--format", "cards"])
    cards = json.loads(out.stdout)["cards"]
    assert cards and all(len(c["summary"]) < 140 for c in cards)
    out = runner.invoke(cli, ["evaluate", path, "--param", "oops"])
    assert out.exit_code == 2 and "RULE.PARAM=VALUE" in out.output


def test_internal_errors_are_one_line_with_exit_3(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from careplan_rules.cli import evaluate as module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(module, "evaluate_inputs", boom)
    out = runner.invoke(cli, ["evaluate", str(EXAMPLES), "--now", NOW])
    assert out.exit_code == 3
    assert "internal error: RuntimeError: kaboom" in out.stderr and "Traceback" not in out.output


def test_version(runner: CliRunner) -> None:
    out = runner.invoke(cli, ["--version"])
    assert out.exit_code == 0 and "careplan-rules" in out.stdout
