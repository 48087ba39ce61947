"""Free-text matching: normalisation, word boundaries, weak tokens, negation, exclusions."""

from __future__ import annotations

import re

import pytest

from careplan_rules.terminology.text import TextMatcher, compile_alternation, normalize_text, token_pattern

KRATOM = TextMatcher(
    strong=["kratom", "mitragynine", "kra-thom", "กระท่อม", "7ΩHMZ"],
    weak=["thang", "biak"],
    context=["tea", "powder", "leaf"],
    negation=["denies", "no", "never", "negative for"],
    exclude=["kratom-free"],
)


def matched(text: str) -> str | None:
    outcome = KRATOM.match(normalize_text(text))
    return outcome.hit.matched if outcome.hit else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kratom capsules", "kratom"),
        ("KRATOM (MITRAGYNINE)", "kratom"),
        ("ｋｒａｔｏｍ powder", "kratom"),  # full-width letters: NFKC
        ("Kra—thom tea", "kra thom"),  # em dash read as a space
        ("ใบกระท่อม ต้ม", "กระท่อม"),  # Thai has no spaces: substring match
        ("7ΩHMZ tablets", "7ωhmz"),
        ("biak leaf tea", "biak"),
        ("thang powder", "thang"),
    ],
)
def test_matches(text: str, expected: str) -> None:
    assert matched(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Kratomix vitamin",  # never inside another word
        "antikratom",  # never inside another word
        "Thang Nguyen, MD",  # weak token without context
        "Trip to Biak island",
        "Denies kratom use",  # negated
        "No kratom",
        "Patient has never used kratom",
        "Urine negative for mitragynine",
        "Cat's claw (mitraphylline) capsules",  # another botanical
        "Lagerstroemia speciosa leaf",
        "kratom-free blend",  # exclusion phrase vetoes
    ],
)
def test_does_not_match(text: str) -> None:
    assert matched(text) is None


def test_negation_does_not_cross_a_sentence_break() -> None:
    assert matched("Denies alcohol. Uses kratom daily") == "kratom"


def test_negation_only_looks_a_few_words_back() -> None:
    assert matched("No allergies known to any food or drug; takes kratom") == "kratom"


def test_rejection_reason_is_reported() -> None:
    outcome = KRATOM.match(normalize_text("Denies kratom"))
    assert outcome.hit is None and outcome.rejected is not None and "negated by 'denies'" in outcome.rejected
    outcome = KRATOM.match(normalize_text("thang"))
    assert outcome.rejected is not None and "without a context word" in outcome.rejected


def test_normalize_text() -> None:
    assert normalize_text("  Kra-Thom\tTEA ") == "kra thom tea"
    assert normalize_text("Ｍｉｔｒａｇｙｎａ") == "mitragyna"


def _plain_alternation(tokens: list[str]) -> re.Pattern[str]:
    """The alternation as written before it was grouped for speed: one boundary per token."""
    norms = sorted({normalize_text(t) for t in tokens}, key=lambda t: (-len(t), t))
    return re.compile("|".join(f"(?:{token_pattern(t)})" for t in norms))


ALTERNATION_TOKENS = [
    "kratom",
    "kratom tea",
    "kra thom",
    "กระท่อม",
    "7-OH",
    "7 hydroxy",
    "m. speciosa",
    "st john's wort",
    "4x100",
    "OPMS",
    "sertraline",
    "ω-3",
]


@pytest.mark.parametrize(
    "text",
    [
        "kratom tea daily",
        "kratomtea",
        "red kratom; kratom tea and ketum",
        "ใบกระท่อม ต้ม kratom",
        "7-oh tablets 7oh 17-oh",
        "m. speciosa leaf, m.speciosa",
        "st john's wort 300 mg",
        "4x100 and 14x100",
        "opms gold",
        "sertraline/ kratom(kratom)",
        "ω 3 fish oil",
        "é kratom é",
    ],
)
def test_grouped_alternation_finds_what_the_plain_one_finds(text: str) -> None:
    grouped = compile_alternation(ALTERNATION_TOKENS)
    assert grouped is not None
    norm = normalize_text(text)
    spans = [(m.start(), m.end(), m.group(0)) for m in grouped.finditer(norm)]
    assert spans == [(m.start(), m.end(), m.group(0)) for m in _plain_alternation(ALTERNATION_TOKENS).finditer(norm)]


def test_normalize_text_of_long_text_is_not_cached_but_identical() -> None:
    long = "Kra-Thom " * 100
    assert normalize_text(long) == ("kra thom " * 100).strip()
