"""The examples in docs/authoring.md work: written out, they lint clean, pass their tests,
and the messages the tutorial quotes are the ones the tools print."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from careplan_rules import load_pack
from careplan_rules.cli.main import cli
from careplan_rules.lint.runner import lint_paths
from careplan_rules.testing.runner import PASS, TODO, run_tests
from tests.factories import ROOT

DOC = ROOT / "docs" / "authoring.md"
BLOCK = re.compile(r"```(?P<lang>\w+)(?: file=(?P<file>\S+))?\n(?P<body>.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str | None, str]]:
    return [(m["lang"], m["file"], m["body"]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    for _lang, name, body in blocks():
        if name:
            target = tmp_path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
    return tmp_path / "qt-pack"


def test_tutorial_files_lint_clean(tutorial: Path) -> None:
    _, diagnostics = lint_paths([tutorial], today=date(2026, 12, 1))
    assert diagnostics == [], [d.render() for d in diagnostics]
    out = CliRunner().invoke(cli, ["lint", str(tutorial)])
    assert out.exit_code == 0 and "1 pack(s), 0 error(s), 0 warning(s)" in out.stderr


def test_tutorial_tests_pass_with_full_coverage(tutorial: Path) -> None:
    run = run_tests([load_pack(tutorial)])
    assert [r.status for r in run.results] == [PASS, PASS, PASS, PASS, TODO], [r.message for r in run.results]
    out = CliRunner().invoke(cli, ["test", str(tutorial), "--min-coverage", "100"])
    assert out.exit_code == 0, out.stdout
    assert "fire 2  no-fire 2  todo 1 | criteria/escalations/activities covered 6/6 (100%)" in out.stdout
    assert "0 failed, 4 passed, 1 todo" in out.stdout


def test_quoted_lint_message_for_a_typo(tutorial: Path) -> None:
    rule = tutorial / "kratom-qt.rule.yaml"
    rule.write_text(rule.read_text().replace("all: [kratom_use, qt_drug]", "all: [kratom_use, qt_drugs]"))
    quoted = next(body for lang, _, body in blocks() if lang == "text" and "qt_drugs" in body).strip()
    _, diagnostics = lint_paths([tutorial], today=date(2026, 12, 1))
    rendered = [d.render().replace(str(tutorial.parent) + "/", "") for d in diagnostics]
    assert quoted in rendered, rendered


def test_quoted_explanation_lines(tutorial: Path, tmp_path: Path) -> None:
    patient = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "id": "k1",
                    "status": "active",
                    "medicationCodeableConcept": {"text": "kratom tea"},
                    "subject": {"reference": "Patient/p1"},
                    "effectiveDateTime": "2026-05-01",
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": "c1",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": "200371",
                                "display": "citalopram 20 MG Oral Tablet",
                            }
                        ]
                    },
                    "subject": {"reference": "Patient/p1"},
                    "authoredOn": "2026-04-01",
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": "o1",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": "26225",
                                "display": "ondansetron",
                            }
                        ]
                    },
                    "subject": {"reference": "Patient/p1"},
                    "authoredOn": "2026-04-01",
                }
            },
        ],
    }
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(patient))
    args = ["explain", str(path), "--rule", "kratom-qt", "--rules", str(tutorial), "--now", "2026-06-01"]
    out = CliRunner().invoke(cli, [*args, "--format", "json"])
    data = json.loads(out.stdout)
    crit = {c["name"]: c for c in data["criteria"]}
    assert data["fired"] and (data["severity"], data["indicator"]) == ("moderate", "warning")
    assert crit["kratom_use"]["matched"][0]["matches"][0]["matchedBy"] == "text"
    citalopram = crit["qt_drug"]["matched"][0]["matches"][0]
    assert (citalopram["matchedBy"], citalopram["matched"]) == ("ingredient-name", "citalopram")
    assert {
        "resource": "MedicationRequest/o1",
        "reason": "'ondansetron' is not in qt-prolonging: code RxNorm 26225 is not in qt-prolonging",
    } in crit["qt_drug"]["rejected"]


# --- docs/rules.md is generated from the bundled pack --------------------------------------


def test_rule_reference_is_current() -> None:
    result = CliRunner().invoke(
        cli, ["docs", str(ROOT / "rules" / "kratom-safety"), "-o", str(ROOT / "docs" / "rules.md"), "--check"]
    )
    assert result.exit_code == 0, (
        "docs/rules.md is out of date: run 'careplan-rules docs rules/kratom-safety -o docs/rules.md'\n" + result.output
    )


def test_rule_reference_anchors_every_rule_for_card_links() -> None:
    # cards link to {pack url}#{rule id}; every rule needs that anchor
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    pack = load_pack(ROOT / "rules" / "kratom-safety")
    for rule in pack.rules:
        assert f'<a id="{rule.id}"></a>' in text
        assert f"Evidence level: **{rule.model.metadata.evidence_level}**" in text


def test_docs_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "rules.md"
    stale.write_text("old\n", encoding="utf-8")
    pack = str(ROOT / "rules" / "kratom-safety")
    result = CliRunner().invoke(cli, ["docs", pack, "-o", str(stale), "--check"])
    assert result.exit_code == 1 and "out of date" in result.output
    assert CliRunner().invoke(cli, ["docs", pack, "-o", str(stale)]).exit_code == 0
    assert CliRunner().invoke(cli, ["docs", pack, "-o", str(stale), "--check"]).exit_code == 0


# --- every relative link in the README and docs/ points at a file of the repository -------

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).resolve().exists():
            missing.append(target)
    assert not missing, f"{page.name} links to missing files: {missing}"
