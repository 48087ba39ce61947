"""``lint``, ``explain`` and ``schema`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator

from careplan_rules.cli.main import cli
from careplan_rules.schema import KINDS, file_name, schema_text
from tests.factories import EXAMPLES, ROOT, RULES

NOW = "2026-06-01T12:00:00Z"


def test_lint_bundled_pack_has_no_errors() -> None:
    out = CliRunner().invoke(cli, ["lint", str(RULES), "--today", "2026-12-01"])
    assert out.exit_code == 0, out.output
    assert " error " not in out.stdout


def test_lint_json_and_fail_on_warning() -> None:
    out = CliRunner().invoke(
        cli, ["lint", str(RULES), "--format", "json", "--fail-on", "warning", "--today", "2026-12-01"]
    )
    doc = json.loads(out.stdout)
    assert doc["packs"][0]["id"] == "kratom-safety"
    assert out.exit_code == (1 if doc["counts"]["warning"] else 0)


def test_lint_no_pack(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["lint", str(tmp_path)])
    assert out.exit_code == 2 and "CPR-E030" in out.stdout


def test_explain_text_and_json() -> None:
    path = str(EXAMPLES / "kratom-contained-tramadol-fluoxetine.json")
    out = CliRunner().invoke(cli, ["explain", path, "--rule", "kratom-serotonergic", "--now", NOW])
    assert out.exit_code == 0, out.output
    assert "FIRED" in out.stdout and "2 serotonergic drugs" in out.stdout
    out = CliRunner().invoke(cli, ["explain", path, "--rule", "kratom-serotonergic", "--now", NOW, "--format", "json"])
    data = json.loads(out.stdout)
    crit = {c["name"]: c for c in data["criteria"]}
    assert crit["maoi"]["holds"] is False
    assert {m["resource"] for m in crit["serotonergic"]["matched"]} == {
        "MedicationRequest/t2",
        "MedicationStatement/f2",
    }
    tramadol = next(m for m in crit["serotonergic"]["matched"] if m["resource"] == "MedicationRequest/t2")
    # a product code: matched through the ingredient map (or, without a map row, by name)
    assert tramadol["matches"][0]["matchedBy"] in ("ingredient-code", "ingredient-name")
    assert any("is not in maoi-like" in r["reason"] for r in crit["maoi"]["rejected"])


def test_explain_rejections_name_status_window_and_other_patients() -> None:
    path = str(EXAMPLES / "kratom-past-and-entered-in-error.json")
    out = CliRunner().invoke(cli, ["explain", path, "--rule", "kratom-use", "--now", NOW, "--format", "json"])
    reasons = [r["reason"] for r in json.loads(out.stdout)["criteria"][0]["rejected"]]
    assert any("entered-in-error" in r for r in reasons)
    assert any("before the P90D lookback" in r for r in reasons)
    assert any("negated by 'denies'" in r for r in reasons)
    two = str(EXAMPLES / "two-patients-social-history.json")
    out = CliRunner().invoke(cli, ["explain", two, "--rule", "kratom-use", "--now", NOW])
    assert out.exit_code == 2 and "choose one with --patient" in out.stderr
    out = CliRunner().invoke(
        cli, ["explain", two, "--rule", "kratom-use", "--now", NOW, "--patient", "Patient/p5b", "--format", "json"]
    )
    assert json.loads(out.stdout)["otherPatients"] == [{"resource": "Observation/obs5a", "patient": "Patient/p5a"}]


def test_explain_unknown_rule() -> None:
    out = CliRunner().invoke(cli, ["explain", str(EXAMPLES / "kratom-sertraline.json"), "--rule", "kratom-usee"])
    assert out.exit_code == 2 and "did you mean 'kratom-use'" in out.stderr


def test_committed_schemas_match_the_models() -> None:
    for kind in KINDS:
        committed = (ROOT / "schema" / file_name(kind)).read_text()
        assert committed == schema_text(kind), (
            f"schema/{file_name(kind)} drifted: run careplan-rules schema --write schema"
        )


def test_schemas_are_draft_07_and_accept_the_bundled_pack() -> None:
    patterns = {
        "rule": "**/*.rule.yaml",
        "valueset": "**/valuesets/*.yaml",
        "pack": "**/pack.yaml",
        "ruletest": "**/*.test.yaml",
        "fixtures": "**/fixtures/*.yaml",
    }
    for kind, pattern in patterns.items():
        schema = json.loads((ROOT / "schema" / file_name(kind)).read_text())
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        Draft7Validator.check_schema(schema)
        validator = Draft7Validator(schema)
        for path in RULES.glob(pattern):
            errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
            assert not errors, (path, errors[:3])


def test_schema_command() -> None:
    out = CliRunner().invoke(cli, ["schema", "--kind", "rule"])
    assert out.exit_code == 0 and json.loads(out.stdout)["$id"].endswith("rule.v1.schema.json")


def test_rule_files_carry_a_schema_modeline() -> None:
    for path in RULES.rglob("*.yaml"):
        assert path.read_text().startswith(("# yaml-language-server: $schema=", "#")), path
