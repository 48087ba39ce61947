"""Facts: the version-independent view of a patient's FHIR data that rules evaluate.

The ``fhir/`` package turns R4/R4B/R5 resources into these frozen dataclasses; the engine
never looks at FHIR JSON. Facts carry dates, not judgements: whether an exposure is current,
recent or past depends on the rule's ``now`` and lookback, so it is decided at evaluation
time (see :func:`exposure_timing`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

from careplan_rules.temporal import Duration


@dataclass(frozen=True, slots=True)
class CodingFact:
    system: str | None
    code: str | None
    display: str | None
    path: str  # where in the resource, e.g. "medicationCodeableConcept.coding[0]"


@dataclass(frozen=True, slots=True)
class TextField:
    """A piece of free text and where it came from; ``norm`` is the matching form."""

    path: str
    text: str
    norm: str


@dataclass(frozen=True, slots=True)
class ConceptMatch:
    """How a record matched a value set: ``matched_by`` is code, ingredient-code,
    ingredient-name or text; ``key`` identifies the distinct drug/concept (for counts)."""

    valueset: str
    matched_by: str
    matched: str
    key: str
    name: str
    field: str
    unverified: bool = False


@dataclass(frozen=True, slots=True)
class MedicationConcept:
    """What was taken: codings and names, plus the ingredients of a referenced Medication."""

    codings: tuple[CodingFact, ...] = ()
    texts: tuple[TextField, ...] = ()
    ingredients: tuple[MedicationConcept, ...] = ()
    source: str = "codeable-concept"  # codeable-concept | contained | bundled | reference | reported
    reference: str | None = None
    unresolved: bool = False
    strength_mg: float | None = None  # for an ingredient: mg per unit, from Medication.ingredient.strength

    @property
    def label(self) -> str:
        """A human name for explanations: the text, else the first display, else the code."""
        for t in self.texts:
            if t.text.strip():
                return t.text.strip()
        for c in self.codings:
            if c.display:
                return c.display
        for c in self.codings:
            if c.code:
                return c.code
        return self.reference or "unnamed medication"


class Timing(enum.Enum):
    """Where an exposure stands relative to ``now``."""

    CURRENT = "current"  # being taken (or ordered/planned) now
    RECENT = "recent"  # ended within the rule's lookback
    PAST = "past"  # ended before the lookback
    EXCLUDED = "excluded"  # never counts: entered-in-error, not-taken, cancelled …


@dataclass(frozen=True, slots=True)
class DoseFact:
    """A structured dose, when the data has one (for MME and dose checks)."""

    quantity: float | None  # per administration
    unit: str | None
    per_day: float | None  # administrations per day (the maximum when a range is given)


@dataclass(frozen=True, slots=True)
class MedicationExposure:
    ref: str
    resource_type: str
    kind: str  # statement | request | dispense | administration | reported | lab-result
    status: str | None
    excluded_reason: str | None  # why it never counts (status), or None
    ongoing: bool  # the status says it continues (active, on-hold, draft, in-progress…)
    start: datetime | None
    end: datetime | None  # the latest instant it is known to have run
    recorded: datetime | None  # when the record was made (dateAsserted, authoredOn…)
    medication: MedicationConcept
    notes: tuple[TextField, ...] = ()
    intent: str | None = None
    doses: tuple[DoseFact, ...] = ()

    @property
    def record_date(self) -> datetime | None:
        """The date a reviewer would call "the date of this record"."""
        candidates = [d for d in (self.recorded, self.start) if d is not None]
        return max(candidates) if candidates else None

    def timing(self, now: datetime, lookback: Duration | None) -> Timing:
        return exposure_timing(self, now, lookback)


def exposure_timing(exposure: MedicationExposure, now: datetime, lookback: Duration | None) -> Timing:
    """Classify an exposure as of ``now``.

    * a status that never counts (entered-in-error, not-taken, cancelled…) → EXCLUDED;
    * an ongoing status is CURRENT unless its period has already ended (then it is judged
      like a finished one); a start in the future is still CURRENT: a draft or planned order
      is exactly what order-sign review is for;
    * a finished status ended at its period end or, lacking one, at the latest date on the
      record; it is RECENT when that is within ``lookback``, else PAST.
    """
    if exposure.excluded_reason is not None:
        return Timing.EXCLUDED
    if exposure.ongoing and (exposure.end is None or exposure.end >= now):
        return Timing.CURRENT
    ended = exposure.end
    if ended is None:
        known = [d for d in (exposure.start, exposure.recorded) if d is not None]
        ended = max(known) if known else None
    if ended is None:
        # a finished record without any date: we cannot place it in time; count it as
        # recent rather than drop it (a missed warning is worse than an extra one)
        return Timing.RECENT if lookback is not None else Timing.PAST
    if ended >= now:
        return Timing.CURRENT
    if lookback is not None and ended >= lookback.before(now):
        return Timing.RECENT
    return Timing.PAST


@dataclass(frozen=True, slots=True)
class ConditionFact:
    ref: str
    codings: tuple[CodingFact, ...]
    texts: tuple[TextField, ...]
    clinical_status: str | None
    verification_status: str | None
    excluded_reason: str | None
    onset: datetime | None
    abatement: datetime | None
    recorded: datetime | None

    def active(self, now: datetime) -> bool:
        if self.excluded_reason is not None:
            return False
        if self.clinical_status is not None:
            return self.clinical_status in ("active", "recurrence", "relapse") and (
                self.abatement is None or self.abatement > now
            )
        return self.abatement is None or self.abatement > now


@dataclass(frozen=True, slots=True)
class ObservationValue:
    number: float | None = None
    unit: str | None = None
    codings: tuple[CodingFact, ...] = ()
    texts: tuple[TextField, ...] = ()
    boolean: bool | None = None

    @property
    def label(self) -> str:
        if self.number is not None:
            num = f"{self.number:g}"
            return f"{num} {self.unit}".strip() if self.unit and not self.unit.startswith("{") else num
        if self.boolean is not None:
            return "yes" if self.boolean else "no"
        for t in self.texts:
            return t.text
        for c in self.codings:
            return c.display or c.code or ""
        return ""


@dataclass(frozen=True, slots=True)
class ObservationComponent:
    codings: tuple[CodingFact, ...]
    value: ObservationValue | None


@dataclass(frozen=True, slots=True)
class ObservationFact:
    ref: str
    codings: tuple[CodingFact, ...]
    texts: tuple[TextField, ...]
    status: str | None
    excluded_reason: str | None
    effective: datetime | None
    value: ObservationValue | None
    components: tuple[ObservationComponent, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CarePlanActivityFact:
    codings: tuple[CodingFact, ...]
    texts: tuple[TextField, ...]
    status: str | None
    performed: datetime | None
    performer_type: str | None


@dataclass(frozen=True, slots=True)
class CarePlanFact:
    ref: str
    status: str | None
    intent: str | None
    created: datetime | None
    activities: tuple[CarePlanActivityFact, ...] = ()
    texts: tuple[TextField, ...] = ()


@dataclass(frozen=True, slots=True)
class ReviewEvent:
    """Something that may document a clinician's review of the medication list."""

    ref: str
    kind: str  # provenance | procedure | task | detected-issue | careplan-activity
    when: datetime | None
    actor_type: str | None  # Practitioner | PractitionerRole | Patient | RelatedPerson | Device …
    actor_ref: str | None
    roles: tuple[str, ...] = ()
    codings: tuple[CodingFact, ...] = ()
    status: str | None = None
    excluded_reason: str | None = None
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientFact:
    ref: str
    birth_date: date | None
    gender: str | None
    deceased: bool = False


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """Everything the rules may read about one patient, from one input."""

    patient_ref: str
    source: str
    fhir_version: str
    patient: PatientFact | None = None
    exposures: tuple[MedicationExposure, ...] = ()
    conditions: tuple[ConditionFact, ...] = ()
    observations: tuple[ObservationFact, ...] = ()
    care_plans: tuple[CarePlanFact, ...] = ()
    reviews: tuple[ReviewEvent, ...] = ()
    resource_refs: frozenset[str] = field(default_factory=frozenset)
