"""Morphine milligram equivalents: computed only where the dose data allow it."""

from __future__ import annotations

import pytest

from careplan_rules.facts import CodingFact, ConceptMatch, DoseFact, MedicationConcept, MedicationExposure, TextField
from careplan_rules.terminology.mme import MmeTableError, daily_mme, parse_mme_table
from careplan_rules.terminology.text import normalize_text
from tests.factories import RXNORM

TABLE = parse_mme_table(
    [
        "# test factors",
        "ingredient\tname\tfactor\tdose_unit\tform\tsource",
        "7804\toxycodone\t1.5\tmg\t\tCDC",
        "5489\thydrocodone\t1\tmg\t\tCDC",
        "4337\tfentanyl\t2.4\tmcg/h\ttransdermal\tCDC",
    ],
    "t.tsv",
)


def exposure(display: str, *doses: DoseFact) -> MedicationExposure:
    concept = MedicationConcept(
        (CodingFact(RXNORM, "999", display, "c"),), (TextField("t", display, normalize_text(display)),)
    )
    return MedicationExposure(
        "MedicationRequest/r",
        "MedicationRequest",
        "request",
        "active",
        None,
        True,
        None,
        None,
        None,
        concept,
        doses=doses,
    )


def match(code: str, name: str) -> ConceptMatch:
    return ConceptMatch("opioids", "ingredient-name", name, f"{RXNORM}|{code}", name, "c")


@pytest.mark.parametrize(
    ("display", "dose", "ingredient", "expected"),
    [
        ("Oxycodone Hydrochloride 10 MG Oral Capsule", DoseFact(1, "capsule", 4), ("7804", "oxycodone"), 60.0),
        (
            "Acetaminophen 325 MG / HYDROcodone Bitartrate 5 MG Oral Tablet",
            DoseFact(2, "{tbl}", 3),
            ("5489", "hydrocodone"),
            30.0,
        ),
        ("Oxycodone Hydrochloride 10 MG Oral Capsule", DoseFact(20, "mg", 2), ("7804", "oxycodone"), 60.0),
        ("72 HR Fentanyl 0.075 MG/HR Transdermal System", DoseFact(1, "patch", 1 / 3), ("4337", "fentanyl"), 180.0),
    ],
)
def test_known_doses(display: str, dose: DoseFact, ingredient: tuple[str, str], expected: float) -> None:
    result = daily_mme(exposure(display, dose), match(*ingredient), TABLE)
    assert result.value == pytest.approx(expected), result.note


@pytest.mark.parametrize(
    ("display", "doses", "why"),
    [
        ("Oxycodone Hydrochloride 10 MG Oral Capsule", (), "no structured dose"),
        ("Oxycodone Hydrochloride 10 MG Oral Capsule", (DoseFact(1, "capsule", None),), "frequency"),
        ("Oxycodone Oral Capsule", (DoseFact(1, "capsule", 4),), "strength of oxycodone not stated"),
        ("Acetaminophen 325 MG / oxyCODONE 5 MG Oral Tablet", (DoseFact(10, "mg", 4),), "ambiguous"),
        ("Oxycodone 5 MG/ML Oral Solution", (DoseFact(2, "mL", 4),), "not convertible"),
    ],
)
def test_unknown_doses_are_unknown_not_zero(display: str, doses: tuple[DoseFact, ...], why: str) -> None:
    result = daily_mme(exposure(display, *doses), match("7804", "oxycodone"), TABLE)
    assert result.value is None and why in result.note


def test_no_factor() -> None:
    result = daily_mme(exposure("Buprenorphine 8 MG", DoseFact(1, "tablet", 1)), match("1819", "buprenorphine"), TABLE)
    assert result.value is None and "no MME conversion factor" in result.note


def test_table_errors_carry_the_line() -> None:
    with pytest.raises(MmeTableError) as info:
        parse_mme_table(["ingredient\tname\tfactor\tdose_unit", "7804\toxycodone\tlots\tmg"], "t.tsv")
    assert info.value.line == 2
