"""Broken rule packs as a new author writes them: each gives its code at the right position.

Every case starts from the minimal valid pack (tests/loader/minimal.py, plus one firing and
one non-firing test so it lints clean) and breaks one thing. ``where`` is the expected
``file:line:col`` of the first diagnostic with ``code`` (``None`` col or line: not checked).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from careplan_rules.lint.runner import lint_paths
from tests.loader.minimal import PACK, RULE, VALUESET, files

TEST = """\
apiVersion: careplan-rules/v1
kind: RuleTest
rule: demo
now: "2026-06-01"
cases:
  - name: fires
    expect: fire
    resources:
      - {resourceType: MedicationStatement, medication: "RXNORM#36437 sertraline", effective: "2026-05-01"}
  - name: does not fire
    expect: no-fire
"""
CITED = RULE.replace(
    "  evidence_level: low\n",
    "  evidence_level: low\n  citations:\n    - {id: X, text: A citation.}\n",
).replace(
    "description: A demo.\n",
    "description: A demo.\ndsi: {citation: x, developer: y, funding_source: z, release_date: '2026-01-01'}\n",
)
BASE = {"rule": CITED, "demo.test.yaml": TEST}


def r(old: str, new: str) -> str:
    """The cited rule with one replacement (asserting the text is there)."""
    assert old in CITED, old
    return CITED.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


CASES: list[tuple[str, dict[str, str], str, str]] = [
    ("yaml syntax", {"rule": r("when: drug_use", "when: [drug_use")}, "CPR-E001", "demo.rule.yaml:21:9"),
    ("tab indentation", {"rule": r("  lookback: P90D", "\tlookback: P90D")}, "CPR-E004", "demo.rule.yaml:14:1"),
    (
        "duplicate key",
        {"rule": r("title: Demo rule\n", "title: Demo rule\ntitle: Again\n")},
        "CPR-E003",
        "demo.rule.yaml:7:1",
    ),
    (
        "typo in a top-level key",
        {"rule": r("description: A demo.", "descripton: A demo.")},
        "CPR-E011",
        "demo.rule.yaml:7:1",
    ),
    (
        "typo in a nested key",
        {"rule": r("  evidence_level: low", "  evidence_levl: low")},
        "CPR-E011",
        "demo.rule.yaml:10:3",
    ),
    (
        "list where text belongs",
        {"rule": r("title: Demo rule", "title: [Demo, rule]")},
        "CPR-E002",
        "demo.rule.yaml:6:8",
    ),
    ("bad enum value", {"rule": r("indicator: warning", "indicator: severe")}, "CPR-E002", "demo.rule.yaml:22:12"),
    ("missing required key", {"rule": r("severity: moderate\n", "")}, "CPR-E002", "demo.rule.yaml:1:1"),
    ("unknown criterion in when", {"rule": r("when: drug_use", "when: drug_usage")}, "CPR-E010", "demo.rule.yaml:20:7"),
    (
        "unknown criterion in an escalation",
        {
            "rule": r(
                "indicator: warning\n",
                "indicator: warning\nescalate:\n  - when: other\n    severity: high\n    reason: r\n",
            )
        },
        "CPR-E010",
        "demo.rule.yaml:24:11",
    ),
    (
        "unknown criterion in implicated",
        {"rule": r("  detail: Details.\n", "  detail: Details.\n  detected_issue: {implicated: [drug]}\n")},
        "CPR-E010",
        "demo.rule.yaml:26:33",
    ),
    ("unknown value set", {"rule": r("{in: drugs}", "{in: drug}")}, "CPR-E020", "demo.rule.yaml:18:24"),
    ("value set version pin", {"rule": r("{in: drugs}", "{in: drugs|9}")}, "CPR-E023", "demo.rule.yaml:18:24"),
    ("unknown param", {"rule": r("lookback: $lookback", "lookback: $window")}, "CPR-E012", "demo.rule.yaml:19:17"),
    ("bad duration", {"rule": r("lookback: P90D", "lookback: 90d")}, "CPR-E013", "demo.rule.yaml:14:13"),
    (
        "unknown when operator",
        {"rule": r("when: drug_use", "when: {alll: [drug_use]}")},
        "CPR-E014",
        "demo.rule.yaml:20:8",
    ),
    ("when as a bare list", {"rule": r("when: drug_use", "when: [drug_use]")}, "CPR-E014", "demo.rule.yaml:20:7"),
    (
        "count without a bound",
        {"rule": r("when: drug_use", "when: {count: {of: drug_use}}")},
        "CPR-E014",
        "demo.rule.yaml:20:15",
    ),
    (
        "template unknown criterion",
        {"rule": r("{drug_use.medication}", "{drug.medication}")},
        "CPR-E032",
        "demo.rule.yaml:24:12",
    ),
    (
        "template unknown field",
        {"rule": r("{drug_use.medication}", "{drug_use.name}")},
        "CPR-E032",
        "demo.rule.yaml:24:12",
    ),
    ("template unbalanced brace", {"rule": r('in use"', 'in use }"')}, "CPR-E032", "demo.rule.yaml:24:12"),
    (
        "template unknown fallback criterion",
        {"rule": r("{drug_use.medication}", "{drug_use.medication | drugs.medication}")},
        "CPR-E032",
        "demo.rule.yaml:24:12",
    ),
    (
        "template empty fallback",
        {"rule": r("{drug_use.medication}", "{drug_use.medication | }")},
        "CPR-E032",
        "demo.rule.yaml:24:12",
    ),
    (
        "summary too long in the worst case",
        {"rule": r('"Drug {drug_use.medication} in use"', '"' + "Long text " * 8 + '{drug_use.medications} in use"')},
        "CPR-E033",
        "demo.rule.yaml:24:12",
    ),
    (
        "system given as a name",
        {"valueset": VALUESET.replace("http://www.nlm.nih.gov/research/umls/rxnorm", "RxNorm")},
        "CPR-E034",
        "drugs.yaml:7:13",
    ),
    (
        "active rule without tests",
        {
            "demo.test.yaml": TEST.replace("rule: demo", "rule: demo\n# nothing").replace(
                "  - name: does not fire\n    expect: no-fire\n", ""
            )
        },
        "CPR-E035",
        "demo.rule.yaml:3:5",
    ),
    ("duplicate rule id", {"other.rule.yaml": CITED}, "CPR-E060", None),
    ("duplicate value set id", {"valuesets/copy.yaml": VALUESET}, "CPR-E061", None),
    (
        "unused criterion",
        {"rule": r("criteria:\n", "criteria:\n  spare:\n    exposure: {medication: {in: drugs}}\n")},
        "CPR-W011",
        "demo.rule.yaml:16:3",
    ),
    (
        "unverified code",
        {"valueset": VALUESET.replace("display: sertraline}", "display: sertraline, unverified: true}")},
        "CPR-W023",
        "drugs.yaml:10:9",
    ),
    (
        "two kinds in one criterion",
        {"rule": r("    exposure:\n", "    condition: {code: {in: drugs}}\n    exposure:\n")},
        "CPR-E002",
        "demo.rule.yaml:17:5",
    ),
    (
        "escalation without a grade",
        {"rule": r("indicator: warning\n", "indicator: warning\nescalate:\n  - when: drug_use\n    reason: r\n")},
        "CPR-E002",
        "demo.rule.yaml:24:5",
    ),
    (
        "finding criterion naming an unknown rule",
        {"rule": r("criteria:\n", "criteria:\n  earlier:\n    finding: {rules: [nope]}\n")},
        "CPR-E015",
        "demo.rule.yaml:17:23",
    ),
    (
        "inherit from a non-finding criterion",
        {"rule": r("indicator: warning\n", "indicator: warning\nescalate:\n  - inherit: drug_use\n    reason: r\n")},
        "CPR-E017",
        "demo.rule.yaml:24:14",
    ),
    (
        "python tag",
        {"rule": r("title: Demo rule", "title: !!python/object/apply:os.system [echo]")},
        "CPR-E007",
        "demo.rule.yaml:6:8",
    ),
    ("wrong kind for the file", {"rule": r("kind: Rule", "kind: ValueSet")}, "CPR-E031", "demo.rule.yaml:2:7"),
    (
        "empty value set",
        {"valuesets/empty.yaml": "apiVersion: careplan-rules/v1\nkind: ValueSet\nid: empty\nversion: '1'\ntitle: E\n"},
        "CPR-E021",
        "empty.yaml:1:1",
    ),
    (
        "value sets including each other",
        {
            "valuesets/a.yaml": "apiVersion: careplan-rules/v1\nkind: ValueSet\nid: a\nversion: '1'\ntitle: A\ninclude:\n  - valueset: b\n",
            "valuesets/b.yaml": "apiVersion: careplan-rules/v1\nkind: ValueSet\nid: b\nversion: '1'\ntitle: B\ninclude:\n  - valueset: a\n",
        },
        "CPR-E022",
        None,
    ),
    (
        "unquoted numeric code",
        {"valueset": VALUESET.replace('code: "36437"', "code: 36437")},
        "CPR-E002",
        "drugs.yaml:10:16",
    ),
    (
        "yes/no read as booleans",
        {"valueset": VALUESET.replace("strong: [kratom]", "strong: [kratom, no]")},
        "CPR-E002",
        "drugs.yaml:12:20",
    ),
    (
        "todo without a reason",
        {"demo.test.yaml": TEST.replace("expect: no-fire", "expect: todo-no-fire")},
        "CPR-E002",
        "demo.test.yaml:10:5",
    ),
    (
        "test naming an unknown rule",
        {"extra.test.yaml": TEST.replace("rule: demo", "rule: dmeo")},
        "CPR-T001",
        "extra.test.yaml:3:7",
    ),
    (
        "escalation that cannot raise the grade",
        {
            "rule": r(
                "indicator: warning\n",
                "indicator: warning\nescalate:\n  - when: drug_use\n    severity: low\n    reason: r\n",
            )
        },
        "CPR-W043",
        "demo.rule.yaml:24:5",
    ),
    (
        "clinical review overdue",
        {
            "rule": r(
                "  evidence_level: low\n", "  evidence_level: low\n  last_reviewed: '2020-01-01'\n  review_every: P1Y\n"
            )
        },
        "CPR-W050",
        None,
    ),
    (
        "active rule without citations",
        {"rule": r("  citations:\n    - {id: X, text: A citation.}\n", "")},
        "CPR-W041",
        "demo.rule.yaml:10:3",
    ),
]


@pytest.mark.parametrize(("name", "overrides", "code", "where"), CASES, ids=[c[0] for c in CASES])
def test_broken_rule(
    tmp_pack: Callable[..., Path], name: str, overrides: dict[str, str], code: str, where: str | None
) -> None:
    root = tmp_pack(files(**{**BASE, **overrides}))
    _, diagnostics = lint_paths([root], today=date(2026, 12, 1))
    found = [d for d in diagnostics if d.code == code]
    assert found, f"{name}: expected {code}, got {[d.render() for d in diagnostics]}"
    if where is not None:
        rendered = found[0].render()
        assert f"{where}:" in rendered or f"{where} " in rendered, rendered


def test_the_minimal_pack_lints_clean(tmp_pack: Callable[..., Path]) -> None:
    _, diagnostics = lint_paths([tmp_pack(files(**BASE))], today=date(2026, 12, 1))
    assert diagnostics == [], [d.render() for d in diagnostics]


def test_at_least_25_distinct_cases() -> None:
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)


def test_binary_and_alias_bomb_files(tmp_pack: Callable[..., Path]) -> None:
    root = tmp_pack(files(**BASE))
    (root / "bin.rule.yaml").write_bytes(b"\x00\x01\x02binary")
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghij"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + 'abcdefghij'[i]] * 9)}]")
    (root / "bomb.rule.yaml").write_text("\n".join(lines))
    _, diagnostics = lint_paths([root], today=date(2026, 12, 1))
    codes = {d.code for d in diagnostics}
    assert {"CPR-E006", "CPR-E008"} <= codes


def test_unused_pack_path(tmp_path: Path) -> None:
    _, diagnostics = lint_paths([tmp_path], today=date(2026, 12, 1))
    assert [d.code for d in diagnostics] == ["CPR-E030"]


def test_pack_header_is_valid() -> None:
    assert PACK.startswith("apiVersion")
