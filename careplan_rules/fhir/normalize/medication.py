"""MedicationStatement / Request / Dispense / Administration → :class:`MedicationExposure`.

Status semantics (same table in docs/semantics.md):

========================  =====================================  ==========================
resource                  counts as taking now ("ongoing")       never counts
========================  =====================================  ==========================
MedicationStatement R4    active, intended, on-hold, unknown     entered-in-error, not-taken
MedicationStatement R5    recorded/draft unless adherence says   entered-in-error,
                          stopped (finished) or not-taking       adherence not-taking
MedicationRequest         active, on-hold, draft, unknown        cancelled, entered-in-error,
                                                                 doNotPerform = true
MedicationDispense        preparation, in-progress, on-hold      cancelled, declined,
                                                                 entered-in-error
MedicationAdministration  in-progress, on-hold                   not-done, entered-in-error
========================  =====================================  ==========================

Everything else (completed, stopped, ended…) finished at its period end or, lacking one, at
the latest date on the record, and is *recent* or *past* depending on the rule's lookback.
``unknown`` counts: an unknown status must not hide an interaction. A ``draft`` order counts:
it is exactly what order-sign review is about.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from careplan_rules.facts import MedicationConcept, MedicationExposure
from careplan_rules.fhir.normalize.common import (
    Context,
    choice,
    codeable,
    instant,
    notes,
    period_bounds,
    text_field,
    time_of,
)
from careplan_rules.fhir.normalize.dose import doses_of, strength_mg

DEFAULT_DISPENSE_SUPPLY = timedelta(days=30)

_ONGOING = {
    "MedicationStatement": {"active", "intended", "on-hold", "unknown", "recorded", "draft"},
    "MedicationRequest": {"active", "on-hold", "draft", "unknown"},
    "MedicationDispense": {"preparation", "in-progress", "on-hold"},
    "MedicationAdministration": {"in-progress", "on-hold"},
}
_NEVER = {
    "MedicationStatement": {"entered-in-error", "not-taken"},
    "MedicationRequest": {"cancelled", "entered-in-error"},
    "MedicationDispense": {"cancelled", "declined", "entered-in-error"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
}
_KIND = {
    "MedicationStatement": "statement",
    "MedicationRequest": "request",
    "MedicationDispense": "dispense",
    "MedicationAdministration": "administration",
}
_R5_ADHERENCE_STOPPED = {"stopped", "stopped-as-directed", "stopped-not-as-directed"}
_R5_ADHERENCE_NOT_TAKING = {"not-taking"}


def medication_concept(ctx: Context, resource: dict[str, Any]) -> MedicationConcept:
    """Resolve ``medication[x]`` (R4) or ``medication`` CodeableReference (R5)."""
    if ctx.r5 and isinstance(resource.get("medication"), dict):
        cref = resource["medication"]
        if isinstance(cref.get("concept"), dict):
            codings, texts = codeable(cref["concept"], "medication.concept")
            return MedicationConcept(codings, texts)
        if isinstance(cref.get("reference"), dict):
            return _referenced(ctx, resource, cref["reference"], "medication.reference")
        return MedicationConcept()
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        codings, texts = codeable(resource["medicationCodeableConcept"], "medicationCodeableConcept")
        return MedicationConcept(codings, texts)
    if isinstance(resource.get("medicationReference"), dict):
        return _referenced(ctx, resource, resource["medicationReference"], "medicationReference")
    return MedicationConcept()


def _referenced(ctx: Context, resource: dict[str, Any], reference: dict[str, Any], path: str) -> MedicationConcept:
    ref = reference.get("reference")
    resolved = ctx.index.resolve(reference, container=resource, from_entry=ctx.entry)
    display = text_field(f"{path}.display", reference.get("display"))
    if resolved is None or resolved.resource.get("resourceType") != "Medication":
        shown = (display,) if display else ()
        return MedicationConcept((), shown, (), "reference", ref if isinstance(ref, str) else None, unresolved=True)
    med = resolved.resource
    base = f"contained[{ref}]" if resolved.contained else resolved.ref
    codings, texts = codeable(med.get("code"), f"{base}.code")
    if display:
        texts = (*texts, display)
    ingredients = []
    for i, ing in enumerate(med.get("ingredient") or []):
        if not isinstance(ing, dict) or ing.get("isActive") is False:
            continue  # excipients do not make a drug interact
        ipath = f"{base}.ingredient[{i}]"
        item = ing.get("item") if ctx.r5 else None
        cc = (item or {}).get("concept") if isinstance(item, dict) else ing.get("itemCodeableConcept")
        iref = (item or {}).get("reference") if isinstance(item, dict) else ing.get("itemReference")
        if isinstance(cc, dict):
            icodings, itexts = codeable(cc, f"{ipath}.item")
            ingredients.append(MedicationConcept(icodings, itexts, (), "ingredient", strength_mg=strength_mg(ing)))
        elif isinstance(iref, dict):
            # inside a contained Medication, "#x" still points into the outer resource
            holder = resource if resolved.contained else med
            target = ctx.index.resolve(iref, container=holder, from_entry=ctx.entry)
            if target is not None and isinstance(target.resource.get("code"), dict):
                icodings, itexts = codeable(target.resource["code"], f"{ipath}.item")
                ingredients.append(
                    MedicationConcept(icodings, itexts, (), "ingredient", target.ref, strength_mg=strength_mg(ing))
                )
            else:
                label = text_field(f"{ipath}.item.display", iref.get("display"))
                ingredients.append(MedicationConcept((), (label,) if label else (), (), "ingredient"))
    source = "contained" if resolved.contained else "bundled"
    return MedicationConcept(codings, texts, tuple(ingredients), source, resolved.ref)


def exposure_from(ctx: Context) -> MedicationExposure:
    r = ctx.entry.resource
    rt = ctx.entry.resource_type
    status = r.get("status") if isinstance(r.get("status"), str) else None
    medication = medication_concept(ctx, r)
    excluded: str | None = None
    if status in _NEVER[rt]:
        excluded = f"status {status!r} never counts"
    ongoing = status in _ONGOING[rt] or status is None
    start = end = recorded = None
    extra_notes = list(notes(r))
    intent = r.get("intent") if isinstance(r.get("intent"), str) else None

    if rt == "MedicationStatement":
        start, end = time_of(r, "effective")
        if choice(r, "effective")[0] == "DateTime":
            # effectiveDateTime on a statement is "taking as of this date", not a one-day course
            end = None
        recorded = instant(r.get("dateAsserted"))
        for i, dosage in enumerate(r.get("dosage") or []):
            if isinstance(dosage, dict):
                t = text_field(f"dosage[{i}].text", dosage.get("text"))
                if t is not None:
                    extra_notes.append(t)
        if ctx.r5:
            adherence = (r.get("adherence") or {}).get("code") if isinstance(r.get("adherence"), dict) else None
            codes = {c.get("code") for c in (adherence or {}).get("coding") or [] if isinstance(c, dict)}
            if codes & _R5_ADHERENCE_NOT_TAKING:
                excluded = "adherence 'not-taking'"
            elif codes & _R5_ADHERENCE_STOPPED:
                ongoing = False
    elif rt == "MedicationRequest":
        if r.get("doNotPerform") is True:
            excluded = "doNotPerform: an order NOT to give this medication"
        recorded = instant(r.get("authoredOn"))
        starts, ends = [], []
        for dosage in r.get("dosageInstruction") or []:
            if not isinstance(dosage, dict):
                continue
            repeat = (
                ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage.get("timing"), dict) else {}
            )
            s, e = period_bounds(repeat.get("boundsPeriod") if isinstance(repeat, dict) else None)
            starts += [s] if s else []
            ends += [e] if e else []
            t = text_field("dosageInstruction.text", dosage.get("text"))
            if t is not None:
                extra_notes.append(t)
        if ctx.r5:
            s, e = period_bounds(r.get("effectiveDosePeriod"))
            starts += [s] if s else []
            ends += [e] if e else []
        vs, _ve = period_bounds(
            (r.get("dispenseRequest") or {}).get("validityPeriod")
            if isinstance(r.get("dispenseRequest"), dict)
            else None
        )
        start = min(starts) if starts else (vs or recorded)
        end = max(ends) if ends else None
    elif rt == "MedicationDispense":
        handed = instant(r.get("whenHandedOver")) or instant(r.get("whenPrepared"))
        start = handed
        recorded = handed
        days = _days_supply(r.get("daysSupply"))
        if handed is not None:
            end = handed + (days if days is not None else DEFAULT_DISPENSE_SUPPLY)
        if status in ("completed", "unknown", None) and end is not None:
            # a completed dispense of a 30-day supply handed over last week is being taken now
            ongoing = True
    elif rt == "MedicationAdministration":
        start, end = time_of(r, "occurence" if ctx.r5 else "effective")
        if start is None:
            start, end = time_of(r, "effective")
        recorded = start
    if medication.unresolved and excluded is None:
        ref = medication.reference or "?"
        ctx.problem(
            "CPR-F030",
            f"medication reference {ref!r} cannot be resolved in the input, so what was taken is unknown",
        )
    return MedicationExposure(
        ref=ctx.ref,
        resource_type=rt,
        kind=_KIND[rt],
        status=status,
        excluded_reason=excluded,
        ongoing=ongoing,
        start=start,
        end=end,
        recorded=recorded,
        medication=medication,
        notes=tuple(extra_notes),
        intent=intent,
        doses=doses_of(r, medication),
    )


def _days_supply(quantity: Any) -> timedelta | None:
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if not isinstance(value, int | float) or value <= 0:
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "d").lower()
    factor = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30, "months": 30}.get(
        unit, 1
    )
    return timedelta(days=float(value) * factor)
