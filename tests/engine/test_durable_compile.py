"""Compiling ``when`` into durable_rules patterns: normal form, limits, unsupported rules.

These tests need no C extension (the compiler is pure Python), except the engine-construction
ones, which skip when durable-rules cannot be imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from careplan_rules import Engine, RuleLoadError
from careplan_rules.engine.backends import durable_compile
from careplan_rules.engine.backends.durable import import_problem, unsupported_reasons
from careplan_rules.engine.backends.durable_compile import Atom, plan_rule
from careplan_rules.model.when import All, AnyOf, Count, DailyMme, Not, Overlaps, Ref, WhenExpr

pytestmark = pytest.mark.durable
needs_durable = pytest.mark.skipif(import_problem() is not None, reason=str(import_problem()))


def ref(name: str) -> Ref:
    return Ref(name, ())


def plan(when: WhenExpr, params: dict[str, str | int | float | bool] | None = None) -> durable_compile.RulePlan:
    result, problems = plan_rule("r", when, (), (), params or {})
    assert result is not None, problems
    return result


def conjunctions(when: WhenExpr) -> list[set[tuple[str, str, str, bool | float]]]:
    """Each alternative as {(criterion, field, op, value)}, independent of atom numbering."""
    p = plan(when)
    out = []
    for conj in p.decisions[0].conjunctions:
        out.append({(p.atoms[atom].criterion, *test) for atom, tests in conj for test in tests})
    return out


def test_negation_becomes_a_positive_test_on_an_always_present_fact() -> None:
    assert conjunctions(All((ref("a"), Not(ref("b"))))) == [{("a", "v", "eq", True), ("b", "v", "eq", False)}]


def test_de_morgan_turns_a_negated_all_into_alternatives() -> None:
    alts = conjunctions(Not(All((ref("a"), ref("b")))))
    assert sorted(map(sorted, alts)) == [[("a", "v", "eq", False)], [("b", "v", "eq", False)]]
    assert conjunctions(Not(AnyOf((ref("a"), ref("b"))))) == [{("a", "v", "eq", False), ("b", "v", "eq", False)}]


def test_contradictions_and_implied_alternatives_are_dropped() -> None:
    assert conjunctions(All((ref("a"), Not(ref("a"))))) == []
    assert conjunctions(AnyOf((ref("a"), All((ref("a"), ref("b")))))) == [{("a", "v", "eq", True)}]


def test_counts_compile_to_relational_tests_and_their_negation_to_alternatives() -> None:
    count = Count(ref("x"), 2, "$most")
    p = plan(count, {"most": 3})
    assert p.atoms == (Atom("x", counted=True),)
    assert [t for _, t in p.decisions[0].conjunctions[0]] == [(("n", "gte", 2.0), ("n", "lte", 3.0))]
    negated_plan = plan(Not(count), {"most": 3})
    negated = [[t for _, tests in c for t in tests] for c in negated_plan.decisions[0].conjunctions]
    assert sorted(negated) == [[("n", "gt", 3.0)], [("n", "lt", 2.0)]]


def test_a_criterion_read_as_a_count_and_a_reference_is_one_fact() -> None:
    p = plan(All((ref("x"), Count(ref("x"), 2, None))))
    assert p.atoms == (Atom("x", counted=True),)
    (conj,) = p.decisions[0].conjunctions
    assert conj == ((0, (("n", "gte", 2.0), ("v", "eq", True))),)  # one pattern: one fact binds once


def test_overlaps_is_an_atom_decided_in_python() -> None:
    ov = Overlaps(ref("a"), ref("b"), "P30D", ("when",))
    p = plan(Not(ov))
    assert p.atoms == (Atom("a", leaf=ov),)
    assert p.python_leaves
    assert [t for _, t in p.decisions[0].conjunctions[0]] == [(("v", "eq", False),)]


def test_daily_mme_is_compared_by_the_engine() -> None:
    p = plan(AnyOf((DailyMme(ref("opioid"), "$limit"), Not(DailyMme(ref("opioid"), 50)))), {"limit": 90})
    assert p.atoms == (Atom("opioid", mme=True),)
    assert not p.python_leaves
    tests = sorted(t for conj in p.decisions[0].conjunctions for _, ts in conj for t in ts)
    assert tests == [("m", "gte", 90.0), ("m", "lt", 50.0)]


def test_too_many_alternatives_is_reported_not_truncated() -> None:
    when = All(tuple(AnyOf((ref(f"a{i}"), ref(f"b{i}"))) for i in range(7)))  # 2**7 = 128 alternatives
    result, problems = plan_rule("r", when, (), (), {})
    assert result is None
    assert problems == [(("when",), "when: it expands to more than 64 alternatives (simplify the any/not nesting)")]


def test_more_than_16_patterns_in_one_alternative_is_reported() -> None:
    when = All(tuple(ref(f"c{i}") for i in range(17)))
    result, problems = plan_rule("r", All(tuple(ref(f"c{i}") for i in range(16))), (None, when), (), {})
    assert result is None
    assert problems == [
        (
            ("escalate", 1, "when"),
            "escalate[1].when joins 17 criteria in one alternative; durable_rules allows at most 16 patterns per rule",
        )
    ]


# --- rules loaded from YAML ----------------------------------------------------------------------

PACK = "apiVersion: careplan-rules/v1\nkind: Pack\nid: wide\nversion: 0.0.1\ntitle: Wide\n"


def rule_yaml(rid: str, n: int, when: str) -> str:
    criteria = "".join(f"  c{i}:\n    patient: {{gender: [female, male]}}\n" for i in range(n))
    return f"""\
apiVersion: careplan-rules/v1
kind: Rule
id: {rid}
version: 1.0.0
status: active
title: {rid}
description: probe
metadata: {{evidence_level: low}}
criteria:
{criteria}when: {when}
severity: low
indicator: info
outputs:
  summary: fired
  detail: probe
"""


@pytest.fixture
def wide_pack(tmp_pack: Callable[..., Path]) -> Path:
    joined = ", ".join(f"c{i}" for i in range(17))
    return tmp_pack(
        {
            "pack.yaml": PACK,
            "wide.rule.yaml": rule_yaml("wide", 17, f"{{all: [{joined}]}}"),
            "narrow.rule.yaml": rule_yaml("narrow", 16, "{all: [" + ", ".join(f"c{i}" for i in range(16)) + "]}"),
        }
    )


def test_unsupported_reasons_for_loaded_and_compiled_rules(wide_pack: Path) -> None:
    engine = Engine.from_paths(wide_pack)  # the python backend runs any rule
    wide, narrow = engine.packs[0].rule("wide"), engine.packs[0].rule("narrow")
    assert wide is not None and narrow is not None
    expected = ["when joins 17 criteria in one alternative; durable_rules allows at most 16 patterns per rule"]
    assert unsupported_reasons(wide) == expected
    assert unsupported_reasons(narrow) == []
    compiled = engine.ruleset.rule("wide")
    assert compiled is not None and unsupported_reasons(compiled) == expected


def test_bundled_rules_are_all_supported(engine: Engine) -> None:
    for pack in engine.packs:
        for rule in pack.rules:
            assert unsupported_reasons(rule) == [], rule.id


@needs_durable
def test_engine_construction_rejects_an_unsupported_rule_naming_it(wide_pack: Path) -> None:
    with pytest.raises(RuleLoadError) as info:
        Engine.from_paths(wide_pack, backend="durable")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "CPR-E070"
    assert diagnostic.rule_id == "wide"
    assert "rule 'wide' cannot run on the durable backend: when joins 17 criteria" in str(info.value)
    assert diagnostic.location is not None and diagnostic.location.file.endswith("wide.rule.yaml")
    Engine.from_paths(wide_pack, backend="durable", only=["narrow"])  # the other rule is fine


@needs_durable
def test_a_rule_set_over_the_engine_budget_fails_with_a_clear_error(
    wide_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable_compile, "MAX_ATOMS", 10)
    with pytest.raises(
        RuleLoadError, match=r"compile to 1 durable_rules rules over 16 facts; .* at most 2000 rules and 10"
    ):
        Engine.from_paths(wide_pack, backend="durable", only=["narrow"])
