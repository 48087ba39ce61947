"""Check 4, what the rules need: valid FHIR the engine can still read wrongly or not at all.

Each is a warning with a stable code (information for CPR-V308), because the data is
legal but a rule may then miss or misjudge something:

* a medication with no code and no text matches no value set — the worst case, a silent miss;
* a medication record without status, subject or any date cannot be placed in time or
  attributed to a patient (the engine treats a missing status as possibly current);
* a period that ends before it starts, or a past event dated in the future, puts a record in
  the wrong time window;
* a coding with a code but no system cannot match a value set, which matches (system, code);
* several patients in one bundle is legal (the engine splits them) but often a mistake in a
  CDS Hooks prefetch or an extract.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.fhir.raw import items
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.version import MED_TYPES
from careplan_rules.temporal import try_parse_fhir_datetime
from careplan_rules.validate.codes import diag
from careplan_rules.validate.walker import Digest

# elements that record when something already happened; a value after `now` is a data error.
# Planned or expiring dates (Period.end, validityPeriod, expirationDate, occurrence[x] of a
# request…) may lie in the future and are deliberately absent.
PAST_EVENT_FIELDS = (
    "authoredOn",
    "recordedDate",
    "recorded",
    "dateAsserted",
    "issued",
    "effectiveDateTime",
    "effectiveInstant",
    "onsetDateTime",
    "abatementDateTime",
    "birthDate",
    "deceasedDateTime",
    "performedDateTime",
    "whenHandedOver",
    "whenPrepared",
)
PAST_EVENT_PERIODS = ("effectivePeriod", "performedPeriod", "onsetPeriod")

# any one of these dates lets the engine place a medication record in time
DATE_FIELDS = {
    "MedicationStatement": (
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveTiming",
        "dateAsserted",
    ),
    "MedicationRequest": ("authoredOn", "effectiveDosePeriod"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "MedicationAdministration": (
        "effectiveDateTime",
        "effectivePeriod",
        "occurenceDateTime",
        "occurencePeriod",
        "occurenceTiming",
    ),
}


def _has_code_or_text(concept: Any) -> bool:
    if not isinstance(concept, dict):
        return False
    text = concept.get("text")
    if isinstance(text, str) and text.strip():
        return True
    for coding in items(concept.get("coding")):
        if isinstance(coding, dict) and (coding.get("code") or coding.get("display")):
            return True
    return False


def _medication_concept(resource: dict[str, Any]) -> tuple[str, Any] | None:
    """``(element, CodeableConcept)`` of a medication record, or None when it is a reference."""
    if "medicationCodeableConcept" in resource:
        return "medicationCodeableConcept", resource["medicationCodeableConcept"]
    med = resource.get("medication")
    if isinstance(med, dict) and "concept" in med:
        return "medication.concept", med["concept"]
    return None


def _request_has_date(r: dict[str, Any]) -> bool:
    dispense = r.get("dispenseRequest")
    if isinstance(dispense, dict) and isinstance(dispense.get("validityPeriod"), dict):
        return True
    for dosage in items(r.get("dosageInstruction")):
        timing = dosage.get("timing") if isinstance(dosage, dict) else None
        if isinstance(timing, dict):
            repeat = timing.get("repeat")
            if timing.get("event") or (isinstance(repeat, dict) and repeat.get("boundsPeriod")):
                return True
    return False


def _medication_record(entry: Entry, location: SourceLocation) -> Iterator[Diagnostic]:
    r = entry.resource
    rt = entry.resource_type
    path = entry.path
    concept = _medication_concept(r)
    if concept is not None and not _has_code_or_text(concept[1]):
        where = f"{path}.{concept[0]}"
        yield diag(
            "CPR-V301",
            f"{where}: the medication has no code and no text, so no rule can recognise it",
            location,
            where,
        )
    if not isinstance(r.get("status"), str):
        yield diag(
            "CPR-V302",
            f"{path}.status: {rt} has no status; the engine counts it as possibly current",
            location,
            f"{path}.status",
        )
    if not isinstance(r.get("subject"), dict):
        yield diag(
            "CPR-V303",
            f"{path}.subject: {rt} names no patient; in an input with several patients it cannot be attributed",
            location,
            f"{path}.subject",
        )
    has_date = any(r.get(name) for name in DATE_FIELDS[rt]) or (rt == "MedicationRequest" and _request_has_date(r))
    if not has_date:
        names = ", ".join(DATE_FIELDS[rt])
        yield diag(
            "CPR-V304",
            f"{path}: {rt} has no date ({names}), so the engine cannot tell whether it is current or past",
            location,
            path,
        )


def _ingredient_named(ingredient: Any) -> bool:
    if not isinstance(ingredient, dict):
        return False
    item = ingredient.get("item")  # R5 CodeableReference
    if isinstance(item, dict):
        return _has_code_or_text(item.get("concept")) or isinstance(item.get("reference"), dict)
    return _has_code_or_text(ingredient.get("itemCodeableConcept")) or isinstance(ingredient.get("itemReference"), dict)


def _medication_resource(resource: dict[str, Any], path: str, location: SourceLocation) -> Iterator[Diagnostic]:
    # a compounded Medication is recognised through its ingredients (the engine matches them)
    if _has_code_or_text(resource.get("code")) or any(_ingredient_named(i) for i in items(resource.get("ingredient"))):
        return
    where = f"{path}.code"
    yield diag(
        "CPR-V301",
        f"{where}: the Medication has no code, no text and no named ingredient, so no rule can recognise it",
        location,
        where,
    )


@functools.lru_cache(maxsize=8)
def _cutoff(now: datetime) -> str:
    # a date a day or more before now is past whatever its zone: text comparison settles most
    # dates without parsing them
    return (now - timedelta(days=1)).date().isoformat()


def _future(entry: Entry, now: datetime, location: SourceLocation) -> list[Diagnostic]:
    r = entry.resource
    cutoff = _cutoff(now)
    late: list[tuple[str, Any]] = []
    for name in PAST_EVENT_FIELDS:
        value = r.get(name)
        if value is not None and not (type(value) is str and len(value) >= 10 and value[:10] < cutoff):
            late.append((name, value))
    for name in PAST_EVENT_PERIODS:
        period = r.get(name)
        if type(period) is dict and "start" in period:
            late.append((f"{name}.start", period["start"]))
    meta = r.get("meta")
    if type(meta) is dict and "lastUpdated" in meta:
        late.append(("meta.lastUpdated", meta["lastUpdated"]))
    out = []
    for name, value in late:
        if type(value) is str and len(value) >= 10 and value[:10] < cutoff:
            continue
        parsed = try_parse_fhir_datetime(value)
        if parsed is not None and parsed.earliest > now:
            where = f"{entry.path}.{name}"
            out.append(
                diag(
                    "CPR-V306",
                    f"{where}: {value!r} is after now ({now.date().isoformat()}), but records a past event",
                    location,
                    where,
                )
            )
    return out


def _periods(digest: Digest, location: SourceLocation) -> Iterator[Diagnostic]:
    for path, period in digest.periods:
        raw_start, raw_end = period.get("start"), period.get("end")
        if not isinstance(raw_start, str) or not isinstance(raw_end, str):
            continue
        same_zone = len(raw_start) <= 10 or raw_start[-6:] == raw_end[-6:] or raw_start[-1:] == raw_end[-1:] == "Z"
        if len(raw_start) == len(raw_end) and same_zone and raw_end >= raw_start:
            # same precision and zone: ISO text orders like time, no need to parse
            continue
        start = try_parse_fhir_datetime(raw_start)
        end = try_parse_fhir_datetime(raw_end)
        if start is not None and end is not None and end.latest < start.earliest:
            yield diag(
                "CPR-V305",
                f"{path}: ends ({end.text}) before it starts ({start.text}) (invariant per-1)",
                location,
                path,
            )


def _codings(digest: Digest, location: SourceLocation) -> Iterator[Diagnostic]:
    for path, coding in digest.codings:
        code = coding.get("code")
        if code and not coding.get("system"):
            yield diag(
                "CPR-V307",
                f"{path}: code {code!r} has no system, so it cannot match a value set",
                location,
                path,
            )


def check_readiness(entry: Entry, digest: Digest, now: datetime, location: SourceLocation) -> list[Diagnostic]:
    """The rule-readiness warnings of one entry (and the Medications it contains).

    Args:
        entry: the resource and its FHIR path.
        digest: what the walker found in it.
        now: dates of past events after this instant are reported.
        location: file (and line) for the diagnostics.
    """
    out: list[Diagnostic] = []
    rt = entry.resource_type
    if rt in MED_TYPES:
        out.extend(_medication_record(entry, location))
    elif rt == "Medication":
        out.extend(_medication_resource(entry.resource, entry.path, location))
    for site in digest.contained:
        if site.resource.get("resourceType") == "Medication":
            out.extend(_medication_resource(site.resource, site.path, location))
    out.extend(_periods(digest, location))
    out.extend(_future(entry, now, location))
    out.extend(_codings(digest, location))
    return out


def check_patients(patients: set[str], path: str, location: SourceLocation) -> Diagnostic | None:
    """CPR-V308 when one bundle holds or names more than one patient."""
    if len(patients) < 2:
        return None
    shown = ", ".join(sorted(patients)[:3]) + (", …" if len(patients) > 3 else "")
    return diag(
        "CPR-V308",
        f"{path}: {len(patients)} patients in one bundle ({shown}); the engine evaluates each on its own",
        location,
        path,
    )
