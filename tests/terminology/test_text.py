"""Free-text matching: normalisation, word boundaries, weak tokens, negation, exclusions."""

from __future__ import annotations

import pytest

from careplan_rules.terminology.text import TextMatcher, normalize_text

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
