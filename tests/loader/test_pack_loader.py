"""Loading rule packs: every problem is a positioned, coded diagnostic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from careplan_rules import RuleLoadError, load_pack
from careplan_rules.loader.pack_loader import load_pack_with_diagnostics
from tests.loader.minimal import RULE, VALUESET, files

MakePack = Callable[..., Path]


def diagnostics(make: MakePack, **overrides: str) -> list[str]:
    _, diags = load_pack_with_diagnostics(make(files(**overrides)))
    return [d.render() for d in diags]


def one(make: MakePack, **overrides: str) -> str:
    found = [d for d in diagnostics(make, **overrides) if " error " in d]
    assert len(found) == 1, found
    return found[0]


def test_minimal_pack_loads(tmp_pack: MakePack) -> None:
    pack = load_pack(tmp_pack(files()))
    assert pack.id == "mini" and [r.id for r in pack.rules] == ["demo"]
    assert set(pack.valuesets) == {"drugs"}


def test_unknown_key_with_did_you_mean(tmp_pack: MakePack) -> None:
    rule = RULE.replace("  evidence_level: low", "  evidence_level: low\n  falsepositive: [x]")
    msg = one(tmp_pack, rule=rule)
    assert "demo.rule.yaml:10:3: error CPR-E011: unknown key 'falsepositive' in 'metadata'" in msg
    assert "did you mean 'falsepositives'?" in msg


def test_wrong_type_names_the_key_and_value(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("severity: moderate", "severity: severe"))
    assert "demo.rule.yaml:18:11: error CPR-E002:" in msg
    assert "'severity' must be one of 'high', 'moderate' or 'low'; got 'severe'" in msg


def test_unquoted_numeric_code_is_reported_with_a_quoting_hint(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, valueset=VALUESET.replace('code: "36437"', "code: 036437"))
    assert "CPR-E002" in msg and 'quote it: "036437"' in msg


def test_unknown_criterion_in_when(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("when: drug_use", "when: {all: [drug_use, drug_usee]}"))
    assert "demo.rule.yaml:17:24: error CPR-E010: criterion 'drug_usee' is not defined" in msg
    assert "did you mean 'drug_use'?" in msg


def test_unknown_value_set_is_an_error_never_an_empty_set(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("{in: drugs}", "{in: drgus}"))
    assert "demo.rule.yaml:15:24: error CPR-E020: value set 'drgus' is not defined" in msg
    assert "did you mean 'drugs'?" in msg


def test_unknown_param(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("lookback: $lookback", "lookback: $lookbak"))
    assert "CPR-E012: param '$lookbak' is not declared" in msg and "did you mean '$lookback'?" in msg


def test_invalid_duration(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("lookback: P90D", "lookback: 90 days"))
    assert "demo.rule.yaml:11:13: error CPR-E013:" in msg and "'90 days' is not an ISO-8601 duration" in msg


def test_duplicate_rule_id(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, **{"other.rule.yaml": RULE})
    assert "CPR-E060: rule id 'demo' is already used by" in msg


def test_duplicate_yaml_key(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("title: Demo rule\n", "title: Demo rule\ntitle: Again\n"))
    assert "demo.rule.yaml:7:1: error CPR-E003: duplicate key 'title'" in msg


def test_missing_required_key(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("indicator: warning\n", ""))
    assert "CPR-E002: missing required key 'indicator'" in msg


def test_criterion_must_have_exactly_one_kind(tmp_pack: MakePack) -> None:
    rule = RULE.replace("  drug_use:\n    exposure:", "  drug_use:\n    description: x\n    nothing: 1\n    exposure:")
    msg = one(tmp_pack, rule=rule)
    assert "CPR-E011: unknown key 'nothing'" in msg


def test_union_errors_are_collapsed_into_one_message(tmp_pack: MakePack) -> None:
    rule = RULE.replace(
        "  drug_use:\n",
        "  score:\n    observation:\n      code: {in: drugs}\n      value: {gte: 10, nope: 1}\n  drug_use:\n",
    )
    msg = one(tmp_pack, rule=rule)
    assert "invalid value for 'value'" in msg


def test_template_reference_to_unknown_criterion(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("{drug_use.medication}", "{drug_usage.medication}"))
    assert "CPR-E032: template refers to unknown criterion 'drug_usage'" in msg


def test_template_unknown_field_and_unbalanced_brace(tmp_pack: MakePack) -> None:
    assert "unknown field 'medicaton'" in one(tmp_pack, rule=RULE.replace(".medication}", ".medicaton}"))
    assert "unbalanced" in one(tmp_pack, rule=RULE.replace('in use"', 'in use {"'))


def test_finding_criterion_unknown_rule_and_cycle(tmp_pack: MakePack) -> None:
    dep = RULE.replace("id: demo", "id: second").replace(
        "  drug_use:\n", "  earlier:\n    finding: {rules: [dmeo]}\n  drug_use:\n"
    )
    msg = one(tmp_pack, **{"second.rule.yaml": dep})
    assert "CPR-E015: rule 'dmeo' is not defined in this pack" in msg and "did you mean 'demo'?" in msg
    a = RULE.replace("  drug_use:\n", "  other:\n    finding: {rules: [second]}\n  drug_use:\n")
    b = dep.replace("[dmeo]", "[demo]")
    found = diagnostics(tmp_pack, rule=a, **{"second.rule.yaml": b})
    assert any("CPR-E016" in d and "cycle" in d for d in found)


def test_value_set_include_unknown_and_empty(tmp_pack: MakePack) -> None:
    vs = VALUESET.replace("include:\n", "include:\n  - valueset: other-drugs\n")
    assert "CPR-E020: value set 'other-drugs' is not defined" in one(tmp_pack, valueset=vs)
    empty = "apiVersion: careplan-rules/v1\nkind: ValueSet\nid: empty\nversion: '1'\ntitle: Empty\n"
    assert "CPR-E021" in one(tmp_pack, **{"valuesets/empty.yaml": empty})


def test_wrong_kind_for_file(tmp_pack: MakePack) -> None:
    msg = one(tmp_pack, rule=RULE.replace("kind: Rule", "kind: ValueSet"))
    assert "CPR-E031" in msg


def test_missing_manifest(tmp_pack: MakePack) -> None:
    root = tmp_pack(files())
    (root / "pack.yaml").unlink()
    _, diags = load_pack_with_diagnostics(root)
    assert [d.code for d in diags] == ["CPR-E030"]


def test_errors_of_all_files_are_reported_together(tmp_pack: MakePack) -> None:
    found = diagnostics(
        tmp_pack,
        rule=RULE.replace("severity: moderate", "severity: x"),
        valueset=VALUESET.replace("title: Some drugs", "titel: Some drugs"),
    )
    files_with_errors = {d.split(":")[0] for d in found if " error " in d}
    assert {Path(f).name for f in files_with_errors} == {"demo.rule.yaml", "drugs.yaml"}


def test_load_pack_raises_with_sorted_diagnostics(tmp_pack: MakePack) -> None:
    with pytest.raises(RuleLoadError) as info:
        load_pack(tmp_pack(files(rule=RULE.replace("when: drug_use", "when: drug_usee"))))
    assert info.value.diagnostics[0].code == "CPR-E010"
    assert "demo.rule.yaml" in str(info.value)


def test_bundled_pack_loads_without_errors() -> None:
    from careplan_rules import bundled_rules_dir

    for pack_dir in bundled_rules_dir().iterdir():
        if (pack_dir / "pack.yaml").exists():
            pack, diags = load_pack_with_diagnostics(pack_dir)
            assert pack is not None
            assert not [d for d in diags if d.is_error], [d.render() for d in diags]
