"""Structured doses: how much per administration and how often per day.

Used for daily-dose checks such as morphine milligram equivalents. Only what the data states
is used; anything ambiguous (a dose range without a maximum, a timing without frequency)
yields ``None`` so the rule knows the dose is unknown rather than zero.
"""

from __future__ import annotations

from typing import Any

from careplan_rules.facts import DoseFact, MedicationConcept

_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}
_TIMING_CODES = {
    "QD": 1.0,
    "QOD": 0.5,
    "BID": 2.0,
    "TID": 3.0,
    "QID": 4.0,
    "AM": 1.0,
    "PM": 1.0,
    "QHS": 1.0,
    "Q4H": 6.0,
    "Q6H": 4.0,
    "Q8H": 3.0,
    "Q12H": 2.0,
}


def per_day(timing: Any) -> float | None:
    if not isinstance(timing, dict):
        return None
    repeat = timing.get("repeat")
    if isinstance(repeat, dict):
        freq = repeat.get("frequencyMax") or repeat.get("frequency")
        period = repeat.get("periodMax") or repeat.get("period")
        unit = repeat.get("periodUnit")
        if isinstance(freq, int | float) and isinstance(period, int | float) and period > 0 and unit in _PERIOD_DAYS:
            return float(freq) / (float(period) * _PERIOD_DAYS[unit])
        when = repeat.get("timeOfDay") or []
        if isinstance(when, list) and when:
            return float(len(when))
    code = timing.get("code")
    if isinstance(code, dict):
        for c in code.get("coding") or []:
            if isinstance(c, dict) and str(c.get("code", "")).upper() in _TIMING_CODES:
                return _TIMING_CODES[str(c["code"]).upper()]
    return None


def _dose_quantity(dosage: dict[str, Any]) -> tuple[float | None, str | None]:
    for dr in dosage.get("doseAndRate") or []:
        if not isinstance(dr, dict):
            continue
        q = dr.get("doseQuantity")
        if isinstance(q, dict) and isinstance(q.get("value"), int | float):
            return float(q["value"]), q.get("code") or q.get("unit")
        rng = dr.get("doseRange")
        if isinstance(rng, dict) and isinstance(rng.get("high"), dict):
            high = rng["high"]
            if isinstance(high.get("value"), int | float):
                return float(high["value"]), high.get("code") or high.get("unit")
    q = dosage.get("dose")  # MedicationAdministration.dosage.dose
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"]), q.get("code") or q.get("unit")
    return None, None


def doses_of(resource: dict[str, Any], medication: MedicationConcept) -> tuple[DoseFact, ...]:
    del medication  # strengths come from the concept when the dose is computed
    dosages: list[Any] = []
    for key in ("dosageInstruction", "dosage"):
        value = resource.get(key)
        if isinstance(value, list):
            dosages += value
        elif isinstance(value, dict):
            dosages.append(value)
    out = []
    for dosage in dosages:
        if not isinstance(dosage, dict):
            continue
        quantity, unit = _dose_quantity(dosage)
        freq = per_day(dosage.get("timing"))
        if quantity is None and freq is None:
            continue
        out.append(DoseFact(quantity, str(unit) if unit else None, freq))
    return tuple(out)


def strength_mg(ingredient: dict[str, Any]) -> float | None:
    """mg per unit from ``Medication.ingredient.strength`` (a Ratio), when stated in mg."""
    strength = ingredient.get("strength")
    if isinstance(strength, dict) and "numerator" not in strength:
        strength = strength.get("strengthRatio")  # R5 strength[x]
    if not isinstance(strength, dict):
        return None
    num = strength.get("numerator") or {}
    den = strength.get("denominator") or {}
    value = num.get("value") if isinstance(num, dict) else None
    unit = str(num.get("code") or num.get("unit") or "").lower() if isinstance(num, dict) else ""
    dval = den.get("value", 1) if isinstance(den, dict) else 1
    if not isinstance(value, int | float) or not isinstance(dval, int | float) or dval <= 0:
        return None
    factor = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}.get(unit)
    return float(value) * factor / float(dval) if factor else None
