"""One patient's resources → a :class:`PatientRecord` of facts."""

from __future__ import annotations

from collections.abc import Collection

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.facts import (
    CarePlanFact,
    ConditionFact,
    MedicationExposure,
    ObservationFact,
    PatientFact,
    PatientRecord,
    ReviewEvent,
)
from careplan_rules.fhir.normalize.clinical import (
    careplan_from,
    condition_exposure,
    condition_from,
    lab_result_exposure,
    observation_exposure,
    observation_from,
    patient_from,
)
from careplan_rules.fhir.normalize.common import Context
from careplan_rules.fhir.normalize.medication import exposure_from
from careplan_rules.fhir.normalize.review import reviews_from
from careplan_rules.fhir.partition import PatientGroup
from careplan_rules.fhir.references import ReferenceIndex

MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationDispense", "MedicationAdministration")
REVIEW_TYPES = ("Provenance", "Procedure", "Task", "DetectedIssue")
NORMALISED_TYPES = frozenset({*MEDICATION_TYPES, *REVIEW_TYPES, "Condition", "Observation", "CarePlan", "Patient"})


def build_record(
    group: PatientGroup,
    index: ReferenceIndex,
    version: str,
    source: str,
    skipped: Collection[int] = (),
) -> tuple[PatientRecord, list[Diagnostic]]:
    """Normalise a patient's resources; problems (e.g. unresolvable medications) are returned.

    ``skipped`` holds the ``id()`` of resources no rule can read (see the pipeline's
    screening) or that failed validation: they are listed in ``resource_refs`` but give no
    facts.
    """
    problems: list[Diagnostic] = []
    exposures: list[MedicationExposure] = []
    conditions: list[ConditionFact] = []
    observations: list[ObservationFact] = []
    care_plans: list[CarePlanFact] = []
    reviews: list[ReviewEvent] = []
    patient: PatientFact | None = None
    refs: set[str] = set()
    release = "R5" if version == "R5" else "R4"
    if group.patient_entry is not None and id(group.patient_entry.resource) not in skipped:
        ctx = Context(index, release, source, group.patient_entry)
        patient = patient_from(ctx)
    for entry in group.entries:
        rt = entry.resource_type
        if skipped and id(entry.resource) in skipped:
            refs.add(index.ref_of(entry))
            continue
        ctx = Context(index, release, source, entry)
        refs.add(ctx.ref)
        if rt in MEDICATION_TYPES:
            exposures.append(exposure_from(ctx))
        elif rt == "Condition":
            fact = condition_from(ctx)
            conditions.append(fact)
            exposures.append(condition_exposure(ctx, fact))
        elif rt == "Observation":
            obs = observation_from(ctx)
            observations.append(obs)
            for exposure in (observation_exposure(ctx, obs), lab_result_exposure(ctx, obs)):
                if exposure is not None:
                    exposures.append(exposure)
        elif rt == "CarePlan":
            care_plans.append(careplan_from(ctx))
            reviews.extend(reviews_from(ctx))
        elif rt in REVIEW_TYPES:
            reviews.extend(reviews_from(ctx))
        problems.extend(ctx.problems)
    record = PatientRecord(
        patient_ref=group.patient_ref,
        source=source,
        fhir_version=release,
        patient=patient,
        exposures=tuple(sorted(exposures, key=lambda e: e.ref)),
        conditions=tuple(sorted(conditions, key=lambda c: c.ref)),
        observations=tuple(sorted(observations, key=lambda o: o.ref)),
        care_plans=tuple(sorted(care_plans, key=lambda c: c.ref)),
        reviews=tuple(sorted(reviews, key=lambda r: (r.ref, r.actor_ref or ""))),
        resource_refs=frozenset(refs),
    )
    return record, problems
