"""Condition, Observation, CarePlan and Patient → facts; reported substance use → exposures.

Kratom is often documented outside the medication list: a social-history or survey answer
("Herbal supplements: kratom daily") or a problem-list entry ("Kratom use disorder"). Those
become *reported* exposures so the medication rules see them, but only from what the patient
reports or the clinician diagnosed: the value of a social-history/survey Observation and the
code of a Condition. The code of a lab Observation ("Mitragynine [Presence] in Urine") is
not a report of use, but a *positive* result is evidence of exposure: a positive laboratory
result becomes a ``lab-result`` exposure whose concept is the test code, so a value set that
lists the test (kratom includes kratom-lab-tests) matches it. Negative, below-cutoff and
uninterpretable results never become exposures; a negative test does not rule use out either.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from careplan_rules.facts import (
    CarePlanActivityFact,
    CarePlanFact,
    CodingFact,
    ConditionFact,
    MedicationConcept,
    MedicationExposure,
    ObservationComponent,
    ObservationFact,
    ObservationValue,
    PatientFact,
    TextField,
)
from careplan_rules.fhir.normalize.common import (
    Context,
    codeable,
    codes_of,
    instant,
    notes,
    status_code,
    text_field,
    time_of,
)

REPORT_CATEGORIES = {"social-history", "survey"}
NEVER_OBSERVATION = {"entered-in-error", "cancelled"}
LAB_CATEGORY = "laboratory"
# v3-ObservationInterpretation: positive / detected / abnormal (a drug screen flags presence as
# abnormal or high) versus negative / not detected / normal / below the low limit
POSITIVE_INTERPRETATIONS = {"POS", "DET", "A", "AA", "H", "HH", "HU", ">"}
NEGATIVE_INTERPRETATIONS = {"NEG", "ND", "N", "L", "LL", "LU", "<"}
# SNOMED CT qualifiers labs send as valueCodeableConcept
POSITIVE_RESULT_CODES = {"10828004", "260373001", "52101004"}  # Positive, Detected, Present
NEGATIVE_RESULT_CODES = {"260385009", "260415000", "2667000"}  # Negative, Not detected, Absent
NEGATIVE_WORDS = ("negative", "not detected", "none detected", "undetected", "absent", "not present", "below cutoff")
POSITIVE_WORDS = ("positive", "detected", "present", "reactive")


def condition_from(ctx: Context) -> ConditionFact:
    r = ctx.entry.resource
    codings, texts = codeable(r.get("code"), "code")
    clinical = status_code(r.get("clinicalStatus"))
    verification = status_code(r.get("verificationStatus"))
    excluded = None
    if verification in ("entered-in-error", "refuted"):
        excluded = f"verification status {verification!r}"
    onset, _ = time_of(r, "onset")
    _, abatement = time_of(r, "abatement")
    if abatement is None and r.get("abatementBoolean") is True:
        # resolved at an unknown time: treat as resolved at the record date
        abatement = instant(r.get("recordedDate")) or onset
    return ConditionFact(
        ref=ctx.ref,
        codings=codings,
        texts=texts + notes(r),
        clinical_status=clinical,
        verification_status=verification,
        excluded_reason=excluded,
        onset=onset,
        abatement=abatement,
        recorded=instant(r.get("recordedDate")),
    )


def condition_exposure(ctx: Context, fact: ConditionFact) -> MedicationExposure:
    """A diagnosis naming a substance ("kratom use disorder") as a reported exposure."""
    ongoing = fact.clinical_status in (None, "active", "recurrence", "relapse")
    return MedicationExposure(
        ref=fact.ref,
        resource_type="Condition",
        kind="reported",
        status=fact.clinical_status,
        excluded_reason=fact.excluded_reason,
        ongoing=ongoing,
        start=fact.onset,
        end=fact.abatement,
        recorded=fact.recorded,
        medication=MedicationConcept(fact.codings, fact.texts, (), "reported"),
    )


def _value(r: dict[str, Any], prefix: str = "value") -> ObservationValue | None:
    for key, v in r.items():
        if not key.startswith(prefix) or key == prefix:
            continue
        suffix = key[len(prefix) :]
        if suffix == "Quantity" and isinstance(v, dict) and isinstance(v.get("value"), int | float):
            return ObservationValue(number=float(v["value"]), unit=v.get("unit") or v.get("code"))
        if suffix == "Integer" and isinstance(v, int):
            return ObservationValue(number=float(v))
        if suffix == "CodeableConcept":
            codings, texts = codeable(v, key)
            return ObservationValue(codings=codings, texts=texts)
        if suffix == "String":
            t = text_field(key, v)
            return ObservationValue(texts=(t,) if t else ())
        if suffix == "Boolean" and isinstance(v, bool):
            return ObservationValue(boolean=v)
    return None


def observation_from(ctx: Context) -> ObservationFact:
    r = ctx.entry.resource
    codings, texts = codeable(r.get("code"), "code")
    status = r.get("status") if isinstance(r.get("status"), str) else None
    excluded = f"status {status!r}" if status in NEVER_OBSERVATION else None
    start, end = time_of(r, "effective")
    effective = end or start or instant(r.get("issued"))
    components = []
    for i, comp in enumerate(r.get("component") or []):
        if isinstance(comp, dict):
            ccodings, _ = codeable(comp.get("code"), f"component[{i}].code")
            components.append(ObservationComponent(ccodings, _value(comp)))
    categories = tuple(code for cat in r.get("category") or [] for code in codes_of(cat))
    return ObservationFact(
        ref=ctx.ref,
        codings=codings,
        texts=texts,
        status=status,
        excluded_reason=excluded,
        effective=effective,
        value=_value(r),
        components=tuple(components),
        categories=categories,
    )


def observation_exposure(ctx: Context, fact: ObservationFact) -> MedicationExposure | None:
    """The answer of a social-history / survey question as a reported exposure."""
    if fact.categories and not set(fact.categories) & REPORT_CATEGORIES:
        return None
    value = fact.value
    if value is None or (not value.codings and not value.texts):
        return None
    return _point_exposure(ctx, fact, "reported", MedicationConcept(value.codings, value.texts, (), "reported"))


def lab_result_exposure(ctx: Context, fact: ObservationFact) -> MedicationExposure | None:
    """A positive laboratory result as evidence of exposure to what it tested for."""
    if fact.categories and LAB_CATEGORY not in fact.categories:
        return None
    if not fact.codings and not fact.texts:
        return None
    if _lab_result(ctx.entry.resource) is not True:
        return None
    return _point_exposure(ctx, fact, "lab-result", MedicationConcept(fact.codings, fact.texts, (), "lab-result"))


def _point_exposure(ctx: Context, fact: ObservationFact, kind: str, concept: MedicationConcept) -> MedicationExposure:
    """An Observation's exposure (``reported``, ``lab-result``) to ``concept`` at its effective time.

    Never ongoing: a report is a point in time and a specimen shows recent use only, so it
    counts within the rule's lookback.
    """
    return MedicationExposure(
        ref=fact.ref,
        resource_type="Observation",
        kind=kind,
        status=fact.status,
        excluded_reason=fact.excluded_reason,
        ongoing=False,
        start=fact.effective,
        end=fact.effective,
        recorded=fact.effective,
        medication=concept,
        notes=notes(ctx.entry.resource),
    )


def _lab_result(r: dict[str, Any]) -> bool | None:
    """True for a positive result, False for a negative one, None when it cannot be read.

    The interpretation wins over the value: labs report quantitative confirmations below the
    cutoff with a number and an "N"/"NEG" flag.
    """
    flags = {code.upper() for cc in r.get("interpretation") or [] for code in codes_of(cc)}
    if flags & NEGATIVE_INTERPRETATIONS:
        return False
    if flags & POSITIVE_INTERPRETATIONS:
        return True
    quantity = r.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        if quantity.get("comparator") in ("<", "<="):
            return False
        return bool(quantity["value"] > 0)
    concept = r.get("valueCodeableConcept")
    codes = set(codes_of(concept))
    if codes & NEGATIVE_RESULT_CODES:
        return False
    if codes & POSITIVE_RESULT_CODES:
        return True
    words = [r.get("valueString")]
    if isinstance(concept, dict):
        words += [concept.get("text"), *(c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict))]
    for word in words:
        if isinstance(word, str):
            low = word.lower()
            if any(w in low for w in NEGATIVE_WORDS):
                return False
            if any(w in low for w in POSITIVE_WORDS):
                return True
    return None


def careplan_from(ctx: Context) -> CarePlanFact:
    r = ctx.entry.resource
    activities = []
    for i, act in enumerate(r.get("activity") or []):
        if not isinstance(act, dict):
            continue
        detail = act.get("detail") if isinstance(act.get("detail"), dict) else None
        if detail is not None:
            codings, texts = codeable(detail.get("code"), f"activity[{i}].detail.code")
            desc = text_field(f"activity[{i}].detail.description", detail.get("description"))
            performer = (detail.get("performer") or [None])[0]
            start, end = time_of(detail, "scheduled")
            activities.append(
                CarePlanActivityFact(
                    codings,
                    texts + ((desc,) if desc else ()),
                    detail.get("status") if isinstance(detail.get("status"), str) else None,
                    end or start,
                    ctx.index.target_type(performer, container=r, from_entry=ctx.entry) if performer else None,
                )
            )
        for j, performed in enumerate(act.get("performedActivity") or []):
            if isinstance(performed, dict) and isinstance(performed.get("concept"), dict):
                codings, texts = codeable(performed["concept"], f"activity[{i}].performedActivity[{j}].concept")
                activities.append(CarePlanActivityFact(codings, texts, "completed", None, None))
    title = text_field("title", r.get("title"))
    desc = text_field("description", r.get("description"))
    start, _ = time_of(r, "period")
    return CarePlanFact(
        ref=ctx.ref,
        status=r.get("status") if isinstance(r.get("status"), str) else None,
        intent=r.get("intent") if isinstance(r.get("intent"), str) else None,
        created=instant(r.get("created")) or start,
        activities=tuple(activities),
        texts=tuple(t for t in (title, desc) if t),
    )


def patient_from(ctx: Context) -> PatientFact:
    r = ctx.entry.resource
    birth = instant(r.get("birthDate"))
    deceased = r.get("deceasedBoolean") is True or "deceasedDateTime" in r
    return PatientFact(
        ref=ctx.ref,
        birth_date=date(birth.year, birth.month, birth.day) if birth else None,
        gender=r.get("gender") if isinstance(r.get("gender"), str) else None,
        deceased=deceased,
    )


def coding_texts(codings: tuple[CodingFact, ...]) -> tuple[TextField, ...]:
    out = []
    for c in codings:
        t = text_field(c.path + ".display", c.display)
        if t:
            out.append(t)
    return tuple(out)
