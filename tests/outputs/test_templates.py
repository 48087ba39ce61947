"""The output template language: literal braces, fallbacks, worst-case lengths."""

from __future__ import annotations

import pytest

from careplan_rules.model.template import (
    CRITERION_FIELDS,
    Placeholder,
    TemplateSyntaxError,
    parse_template,
    worst_case_length,
)


def test_literal_braces_and_placeholders() -> None:
    t = parse_template("{{x}} {drug.medication} at {params.dose}")
    assert t.parts[0] == "{x} "
    assert isinstance(t.parts[1], Placeholder) and (t.parts[1].root, t.parts[1].field) == ("drug", "medication")


def test_fallback_chain_is_parsed_in_order() -> None:
    (ph,) = [
        p for p in parse_template("{sedative.medication | alcohol.medication}").parts if isinstance(p, Placeholder)
    ]
    assert [(r.root, r.field) for r in ph.chain()] == [("sedative", "medication"), ("alcohol", "medication")]


@pytest.mark.parametrize("text", ["{}", "{a.medication | }", "{ | a.medication}", "open {", "close }"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        parse_template(text)


def test_worst_case_takes_the_longest_alternative() -> None:
    one = worst_case_length(parse_template("{a.count}"))
    both = worst_case_length(parse_template("{a.count | b.medications}"))
    assert one == CRITERION_FIELDS["count"]
    assert both == CRITERION_FIELDS["medications"]
    assert worst_case_length(parse_template("{rule.title}!"), {"rule.title": "Short"}) == len("Short!")
