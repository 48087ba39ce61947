"""Morphine milligram equivalents (MME) per day, where the dose data allow it.

MME/day = dose per administration (mg of the opioid ingredient) × administrations per day ×
the ingredient's CDC conversion factor; transdermal fentanyl is mcg/h × its factor
(CDC 2022 guideline, Table; factors shipped as pack data, see the pack's
``mme-conversion-factors.tsv``). Nothing is guessed: a dose without a quantity, a frequency
or a strength gives ``None`` ("unknown"), never zero, and rules treat unknown as "not shown
to be high".

Strength comes from ``Medication.ingredient.strength`` when present, else from the RxNorm
style product name ("Acetaminophen 325 MG / HYDROcodone Bitartrate 5 MG Oral Tablet": the
segment naming the ingredient gives 5 mg).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from careplan_rules.facts import ConceptMatch, MedicationExposure
from careplan_rules.terminology.text import normalize_text

_COUNT_UNITS = {
    "",
    "1",
    "{tbl}",
    "{tablet}",
    "tablet",
    "tablets",
    "tab",
    "tabs",
    "{capsule}",
    "capsule",
    "capsules",
    "cap",
    "caps",
    "patch",
    "patches",
    "{patch}",
    "film",
    "{film}",
    "each",
    "ea",
}
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|ug)\b(?!\s*/\s*(?:ml|actuat|hr|h)\b)")
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|ug)\s*/\s*(?:hr|h)\b")


@dataclass(frozen=True, slots=True)
class MmeFactor:
    ingredient: str
    name: str
    factor: float
    dose_unit: str  # mg | mcg/h | mcg
    form: str | None


@dataclass(frozen=True, slots=True)
class MmeTable:
    factors: Mapping[str, tuple[MmeFactor, ...]] = field(default_factory=dict)
    source: str = ""

    def __bool__(self) -> bool:
        return bool(self.factors)


class MmeTableError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def parse_mme_table(lines: Iterable[str], source: str) -> MmeTable:
    """Parse ``ingredient, name, factor, dose_unit, form, source`` TSV rows (``#`` comments).

    Raises:
        MmeTableError: with the 1-based line of a malformed row.
    """
    factors: dict[str, list[MmeFactor]] = {}
    header = True
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        if header:
            header = False
            if cols[0].strip().lower() == "ingredient":
                continue
        if len(cols) < 4:
            raise MmeTableError("expected ingredient<TAB>name<TAB>factor<TAB>dose_unit[<TAB>form<TAB>source]", number)
        try:
            factor = float(cols[2])
        except ValueError:
            raise MmeTableError(f"factor {cols[2]!r} is not a number", number) from None
        unit = cols[3].strip().lower()
        if unit not in ("mg", "mcg/h", "mcg"):
            raise MmeTableError(f"dose_unit {unit!r} must be mg, mcg/h or mcg", number)
        form = cols[4].strip().lower() if len(cols) > 4 and cols[4].strip() else None
        ingredient = cols[0].strip()
        factors.setdefault(ingredient, []).append(MmeFactor(ingredient, cols[1].strip(), factor, unit, form))
    return MmeTable({k: tuple(v) for k, v in factors.items()}, source)


@dataclass(frozen=True, slots=True)
class DailyMme:
    value: float | None
    note: str  # how it was computed, or why it is unknown (for explanations)
    product: str  # grouping key: repeated orders of one product count once


def _strength_from_text(texts: Iterable[str], ingredient_name: str, rate: bool) -> float | None:
    """mg (or mcg/h for rates) of the named ingredient in an RxNorm-style product name."""
    name = normalize_text(ingredient_name)
    for text in texts:
        norm = normalize_text(text)
        segments = [s for s in re.split(r"\s/\s|\s\+\s", norm) if name in s] or ([norm] if name in norm else [])
        for segment in segments:
            if rate:
                m = _RATE.search(segment)
                if m:
                    value = float(m.group(1))
                    return value * 1000 if m.group(2) == "mg" else value
            else:
                found = _STRENGTH.findall(segment)
                if len(found) == 1:  # ambiguous when a segment names several strengths
                    value, unit = float(found[0][0]), found[0][1]
                    return value if unit == "mg" else value / 1000
    return None


def daily_mme(exposure: MedicationExposure, match: ConceptMatch, table: MmeTable) -> DailyMme:
    """MME/day of one exposure for one matched opioid ingredient."""
    med = exposure.medication
    product = next((c.code for c in med.codings if c.code), None) or normalize_text(med.label)
    ingredient = match.key.rsplit("|", 1)[-1]
    options = table.factors.get(ingredient)
    if not options:
        return DailyMme(None, f"no MME conversion factor for {match.name}", product)
    texts = [t.text for t in med.texts] + [c.display for c in med.codings if c.display]
    transdermal = any("transdermal" in normalize_text(t) or "patch" in normalize_text(t) for t in texts)
    factor = next((f for f in options if f.form == "transdermal"), None) if transdermal else None
    factor = factor or next((f for f in options if f.form is None), options[0])
    if not exposure.doses:
        return DailyMme(None, "no structured dose", product)
    if factor.dose_unit == "mcg/h":
        rate = _strength_from_text(texts, match.name, rate=True)
        if rate is None:
            return DailyMme(None, "patch strength (mcg/h) not stated", product)
        return DailyMme(rate * factor.factor, f"{rate:g} mcg/h × {factor.factor:g}", product)
    totals: list[float] = []
    for dose in exposure.doses:
        if dose.quantity is None or dose.per_day is None:
            return DailyMme(None, "dose quantity or frequency not stated", product)
        unit = (dose.unit or "").strip().lower()
        if unit == "mg":
            if len(med.ingredients) > 1 or " / " in " ".join(texts):
                return DailyMme(None, "a dose in mg of a combination product is ambiguous", product)
            mg = dose.quantity
        elif unit in _COUNT_UNITS:
            strength = next(
                (i.strength_mg for i in med.ingredients if i.strength_mg and _names(i, match.name)), None
            ) or _strength_from_text(texts, match.name, rate=False)
            if strength is None:
                return DailyMme(None, f"strength of {match.name} not stated", product)
            mg = dose.quantity * strength
        else:
            return DailyMme(None, f"dose unit {dose.unit!r} not convertible", product)
        totals.append(mg * dose.per_day)
    daily_mg = sum(totals)
    return DailyMme(daily_mg * factor.factor, f"{daily_mg:g} mg/day × {factor.factor:g}", product)


def _names(ingredient: object, name: str) -> bool:
    texts = getattr(ingredient, "texts", ())
    codings = getattr(ingredient, "codings", ())
    blob = " ".join([t.norm for t in texts] + [normalize_text(c.display or "") for c in codings])
    return normalize_text(name) in blob
