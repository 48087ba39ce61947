"""Compiled criteria: each kind of criterion as an immutable object that matches facts.

Value sets are looked up when the rule is compiled, so an unknown value set fails at load
time, never as an empty match at evaluation time. When tracing, every record a criterion
looked at and rejected is kept with the reason, which is what ``explain`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from careplan_rules.engine.context import EvalContext
from careplan_rules.engine.params import resolve_duration, resolve_number
from careplan_rules.facts import (
    ConceptMatch,
    MedicationExposure,
    ObservationFact,
    ObservationValue,
    ReviewEvent,
    Timing,
)
from careplan_rules.findings import CriterionResult, Match, Rejected
from careplan_rules.model.common import ValueSetRef
from careplan_rules.model.rule import (
    CarePlanSpec,
    ConditionSpec,
    Criterion,
    ExposureSpec,
    FindingSpec,
    NumberFilter,
    ObservationSpec,
    ParamValue,
    PatientSpec,
    ReviewSpec,
)
from careplan_rules.temporal import Duration, age_in_years
from careplan_rules.terminology.mme import MmeTable, daily_mme
from careplan_rules.terminology.registry import ValueSetRegistry
from careplan_rules.terminology.valueset import CompiledValueSet, Rejection

Results = Mapping[str, CriterionResult]


class CompiledCriterion(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def depends_on(self) -> tuple[str, ...]: ...

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult: ...


def _why(rejections: list[Rejection], default: str) -> str:
    return "; ".join(dict.fromkeys(r.reason for r in rejections[:3])) or default


def _date(d: datetime | None) -> str:
    return d.date().isoformat() if d else "an unknown date"


@dataclass(frozen=True, slots=True)
class NumberTest:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    eq: float | None = None

    @classmethod
    def compile(cls, flt: NumberFilter, params: Mapping[str, ParamValue]) -> NumberTest:
        return cls(
            *(
                resolve_number(getattr(flt, k), params) if getattr(flt, k) is not None else None
                for k in ("gt", "gte", "lt", "lte", "eq")
            )
        )

    def __call__(self, x: float) -> bool:
        return not (
            (self.gt is not None and not x > self.gt)
            or (self.gte is not None and not x >= self.gte)
            or (self.lt is not None and not x < self.lt)
            or (self.lte is not None and not x <= self.lte)
            or (self.eq is not None and x != self.eq)
        )

    def describe(self) -> str:
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}
        return " and ".join(f"{ops[k]} {getattr(self, k):g}" for k in ops if getattr(self, k) is not None)


@dataclass(frozen=True, slots=True)
class ExposureCriterion:
    name: str
    valueset: CompiledValueSet
    sources: frozenset[str]
    lookback: Duration | None
    mme_table: MmeTable | None = None
    started_within: Duration | None = None
    kind: str = "exposure"
    # everything the outcome depends on but the name: rules that share the criterion share
    # its result (the MME table by identity: one per pack, and not hashable)
    shared_key: tuple[object, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.kind, self.valueset, self.sources, self.lookback, id(self.mme_table), self.started_within)
        object.__setattr__(self, "shared_key", key)

    def depends_on(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        shared = ctx.shared_results.get(self.shared_key)
        if shared is None:
            shared = ctx.shared_results[self.shared_key] = self._evaluate(ctx)
        return CriterionResult(self.name, self.kind, *shared)

    def _evaluate(self, ctx: EvalContext) -> tuple[tuple[Match, ...], tuple[Rejected, ...]]:
        matches: list[Match] = []
        rejected: list[Rejected] = []
        for exp in ctx.record.exposures:
            if exp.resource_type not in self.sources:
                if ctx.trace:
                    rejected.append(Rejected(exp.ref, f"{exp.resource_type} is not read by this criterion"))
                continue
            found, why = ctx.medication_matches(self.valueset, exp)
            if not found:
                if ctx.trace:
                    rejected.append(
                        Rejected(
                            exp.ref,
                            f"{exp.medication.label!r} is not in {self.valueset.id}: "
                            + _why(why, "no code, ingredient or text match"),
                        )
                    )
                continue
            timing = exp.timing(ctx.now, self.lookback)
            if timing is Timing.EXCLUDED:
                if ctx.trace:
                    rejected.append(Rejected(exp.ref, exp.excluded_reason or "excluded"))
                continue
            if timing is Timing.PAST:
                if ctx.trace:
                    ended = exp.end or exp.record_date
                    window = f"the {self.lookback} lookback" if self.lookback else "now (only current use counts)"
                    rejected.append(Rejected(exp.ref, f"ended {_date(ended)}, before {window}"))
                continue
            if self.started_within is not None:
                began = exp.start or exp.recorded
                if began is None or began < self.started_within.before(ctx.now):
                    if ctx.trace:
                        rejected.append(
                            Rejected(exp.ref, f"started {_date(began)}, not within the last {self.started_within}")
                        )
                    continue
            mme, product, note = self._mme(exp, found)
            matches.append(
                Match(
                    ref=exp.ref,
                    resource_type=exp.resource_type,
                    label=exp.medication.label,
                    evidence=tuple(found),
                    date=exp.record_date,
                    start=exp.start,
                    end=None if timing is Timing.CURRENT else (exp.end or exp.record_date),
                    timing=timing.value,
                    mme=mme,
                    product=product,
                    note=note,
                )
            )
        return tuple(matches), tuple(rejected)

    def _mme(self, exp: MedicationExposure, found: list[ConceptMatch]) -> tuple[float | None, str | None, str | None]:
        if not self.mme_table:
            return None, None, None
        values, notes, product = [], [], None
        for concept in found:
            daily = daily_mme(exp, concept, self.mme_table)
            product = daily.product
            notes.append(f"{concept.name}: {daily.note}")
            if daily.value is not None:
                values.append(daily.value)
        return (sum(values) if values else None), product, "; ".join(notes)


@dataclass(frozen=True, slots=True)
class ConditionCriterion:
    name: str
    valueset: CompiledValueSet
    status: str
    lookback: Duration | None
    kind: str = "condition"

    def depends_on(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        matches: list[Match] = []
        rejected: list[Rejected] = []
        for cond in ctx.record.conditions:
            found, why = ctx.code_matches(self.valueset, cond.ref, "code", cond.codings, cond.texts)
            if not found:
                if ctx.trace:
                    rejected.append(Rejected(cond.ref, f"code not in {self.valueset.id}: " + _why(why, "no match")))
                continue
            if cond.excluded_reason:
                if ctx.trace:
                    rejected.append(Rejected(cond.ref, cond.excluded_reason))
                continue
            if self.status == "active" and not cond.active(ctx.now):
                resolved_recently = (
                    self.lookback is not None
                    and cond.abatement is not None
                    and cond.abatement >= self.lookback.before(ctx.now)
                )
                if not resolved_recently:
                    if ctx.trace:
                        rejected.append(
                            Rejected(
                                cond.ref,
                                f"not active (clinical status {cond.clinical_status!r}"
                                + (f", resolved {_date(cond.abatement)})" if cond.abatement else ")"),
                            )
                        )
                    continue
            matches.append(
                Match(
                    ref=cond.ref,
                    resource_type="Condition",
                    label=found[0].name,
                    evidence=tuple(found),
                    date=cond.recorded or cond.onset,
                    start=cond.onset,
                    end=cond.abatement,
                )
            )
        return CriterionResult(self.name, self.kind, tuple(matches), tuple(rejected))


@dataclass(frozen=True, slots=True)
class ObservationCriterion:
    name: str
    valueset: CompiledValueSet
    number: NumberTest | None
    value_set: CompiledValueSet | None
    within: Duration | None
    latest: bool
    kind: str = "observation"

    def depends_on(self) -> tuple[str, ...]:
        return ()

    def _coded(self, ctx: EvalContext, obs: ObservationFact) -> tuple[list[Any], ObservationValue | None]:
        found, _ = ctx.code_matches(self.valueset, obs.ref, "code", obs.codings, obs.texts)
        if found:
            return found, obs.value
        for i, comp in enumerate(obs.components):
            cfound, _ = ctx.code_matches(self.valueset, obs.ref, f"component{i}", comp.codings, ())
            if cfound:
                return cfound, comp.value
        return [], None

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        candidates: list[tuple[ObservationFact, list[Any], ObservationValue | None]] = []
        rejected: list[Rejected] = []
        since = self.within.before(ctx.now) if self.within else None
        for obs in ctx.record.observations:
            found, value = self._coded(ctx, obs)
            if not found:
                if ctx.trace:
                    rejected.append(Rejected(obs.ref, f"code not in {self.valueset.id}"))
                continue
            if obs.excluded_reason:
                if ctx.trace:
                    rejected.append(Rejected(obs.ref, obs.excluded_reason))
                continue
            if since is not None and (obs.effective is None or obs.effective < since):
                if ctx.trace:
                    rejected.append(Rejected(obs.ref, f"dated {_date(obs.effective)}, outside the last {self.within}"))
                continue
            candidates.append((obs, found, value))
        if self.latest and candidates:
            candidates.sort(key=lambda c: (c[0].effective or datetime.min.replace(tzinfo=ctx.now.tzinfo), c[0].ref))
            for obs, _, _ in candidates[:-1]:
                if ctx.trace:
                    rejected.append(Rejected(obs.ref, "a later observation with the same code supersedes it"))
            candidates = candidates[-1:]
        matches: list[Match] = []
        for obs, found, value in candidates:
            if self.number is not None:
                if value is None or value.number is None:
                    if ctx.trace:
                        rejected.append(Rejected(obs.ref, "has no numeric value"))
                    continue
                if not self.number(value.number):
                    if ctx.trace:
                        rejected.append(Rejected(obs.ref, f"value {value.label} is not {self.number.describe()}"))
                    continue
            if self.value_set is not None:
                vfound, _ = self.value_set.match_concept_codings(value.codings, value.texts) if value else ([], [])
                if not vfound:
                    if ctx.trace:
                        label = value.label if value else "no value"
                        rejected.append(Rejected(obs.ref, f"value {label!r} is not in {self.value_set.id}"))
                    continue
            matches.append(
                Match(
                    ref=obs.ref,
                    resource_type="Observation",
                    label=found[0].name,
                    evidence=tuple(found),
                    date=obs.effective,
                    start=obs.effective,
                    end=obs.effective,
                    value=value,
                )
            )
        return CriterionResult(self.name, self.kind, tuple(matches), tuple(rejected))


@dataclass(frozen=True, slots=True)
class ReviewCriterion:
    name: str
    kinds: frozenset[str]
    valueset: CompiledValueSet | None
    by: frozenset[str]
    roles: frozenset[str]
    targets: tuple[str, ...]
    after: str | None
    within: Duration | None
    kind: str = "review"

    def depends_on(self) -> tuple[str, ...]:
        return (*self.targets, *((self.after,) if self.after else ()))

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        matches: list[Match] = []
        rejected: list[Rejected] = []
        target_refs: set[str] = set()
        for t in self.targets:
            target_refs.update(m.ref for m in results[t].matches)
        after_date = None
        if self.after is not None:
            dates = [m.date for m in results[self.after].matches if m.date is not None]
            after_date = max(dates) if dates else None
        since = self.within.before(ctx.now) if self.within else None
        seen: set[str] = set()
        for ev in ctx.record.reviews:
            reason = self._reject(ctx, ev, target_refs, after_date, since)
            if reason is not None:
                if ctx.trace:
                    rejected.append(Rejected(ev.ref, reason))
                continue
            if ev.ref in seen:
                continue
            seen.add(ev.ref)
            matches.append(
                Match(
                    ref=ev.ref,
                    resource_type={"detected-issue": "DetectedIssue", "careplan-activity": "CarePlan"}.get(
                        ev.kind, ev.kind.capitalize()
                    ),
                    label=f"{ev.kind} by {ev.actor_ref or ev.actor_type}",
                    date=ev.when,
                    start=ev.when,
                    end=ev.when,
                )
            )
        return CriterionResult(self.name, self.kind, tuple(matches), tuple(rejected))

    def _reject(
        self,
        ctx: EvalContext,
        ev: ReviewEvent,
        target_refs: set[str],
        after_date: datetime | None,
        since: datetime | None,
    ) -> str | None:
        if ev.kind not in self.kinds:
            return f"{ev.kind} records are not accepted as reviews by this criterion"
        if ev.excluded_reason:
            return str(ev.excluded_reason)
        if ev.actor_type not in self.by:
            if ev.actor_type in ("Patient", "RelatedPerson"):
                return f"recorded by the {ev.actor_type.lower()} ({ev.actor_ref}): not a clinician review"
            if ev.actor_type is None:
                return "no identifiable clinician (no performer/author/agent of known type)"
            return f"by a {ev.actor_type} ({ev.actor_ref}), not a {' or '.join(sorted(self.by))}"
        if ev.kind == "provenance" and not set(ev.roles) & self.roles:
            roles = ", ".join(ev.roles) or "none stated"
            return f"agent role ({roles}) is not one of {', '.join(sorted(self.roles))}"
        if ev.kind in ("provenance", "detected-issue") and self.targets:
            plan_ok = ev.kind == "provenance" and any(t.startswith("CarePlan/") for t in ev.targets)
            if not (set(ev.targets) & target_refs) and not plan_ok:
                return "does not target the records in question (" + (", ".join(ev.targets) or "no target") + ")"
        if ev.kind in ("procedure", "task", "careplan-activity") and self.valueset is not None:
            found, _ = ctx.code_matches(self.valueset, ev.ref, "code", ev.codings, ())
            if not found:
                label = ", ".join(f"{c.code}" for c in ev.codings if c.code) or "no code"
                return f"code ({label}) is not in {self.valueset.id}"
        if ev.when is None:
            return "undated, so it cannot be placed after the records it should review"
        if after_date is not None and ev.when.date() < after_date.date():
            return f"dated {_date(ev.when)}, before the latest record ({_date(after_date)})"
        if since is not None and ev.when < since:
            return f"dated {_date(ev.when)}, older than {self.within}"
        return None


@dataclass(frozen=True, slots=True)
class CarePlanCriterion:
    name: str
    statuses: frozenset[str]
    kind: str = "careplan"

    def depends_on(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        matches, rejected = [], []
        for plan in ctx.record.care_plans:
            if plan.status in self.statuses:
                matches.append(
                    Match(
                        plan.ref,
                        "CarePlan",
                        plan.texts[0].text if plan.texts else plan.ref,
                        date=plan.created,
                        start=plan.created,
                    )
                )
            elif ctx.trace:
                rejected.append(Rejected(plan.ref, f"status {plan.status!r}"))
        return CriterionResult(self.name, self.kind, tuple(matches), tuple(rejected))


@dataclass(frozen=True, slots=True)
class PatientCriterion:
    name: str
    age: NumberTest | None
    genders: frozenset[str] | None
    kind: str = "patient"

    def depends_on(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        patient = ctx.record.patient
        ref = patient.ref if patient else ctx.record.patient_ref
        reason = None
        if patient is None:
            reason = "no Patient resource in the input"
        elif self.age is not None:
            if patient.birth_date is None:
                reason = "birth date unknown"
            elif not self.age(age_in_years(patient.birth_date, ctx.now)):
                reason = f"age {age_in_years(patient.birth_date, ctx.now)} is not {self.age.describe()}"
        if reason is None and self.genders is not None and (patient is None or patient.gender not in self.genders):
            reason = f"gender {patient.gender if patient else None!r} is not {', '.join(sorted(self.genders))}"
        if reason is not None:
            return CriterionResult(self.name, self.kind, (), (Rejected(ref, reason),) if ctx.trace else ())
        return CriterionResult(self.name, self.kind, (Match(ref, "Patient", ref),))


@dataclass(frozen=True, slots=True)
class FindingCriterion:
    name: str
    rules: tuple[str, ...]
    kind: str = "finding"

    def depends_on(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: EvalContext, results: Results) -> CriterionResult:
        matches, rejected = [], []
        for rule_id in self.rules:
            outcome = ctx.outcomes.get(rule_id)
            if outcome is not None and outcome.fired:
                matches.append(Match(f"finding:{rule_id}", "Finding", rule_id, outcome=outcome))
            elif ctx.trace:
                rejected.append(Rejected(f"finding:{rule_id}", "did not fire"))
        return CriterionResult(self.name, self.kind, tuple(matches), tuple(rejected))


def compile_criterion(
    name: str, criterion: Criterion, registry: ValueSetRegistry, params: Mapping[str, ParamValue]
) -> CompiledCriterion:
    spec = getattr(criterion, criterion.kind)

    def vs(ref: ValueSetRef) -> CompiledValueSet:
        return registry.get(ref.in_)

    def dur(text: str | None) -> Duration | None:
        return resolve_duration(text, params) if text is not None else None

    if isinstance(spec, ExposureSpec):
        return ExposureCriterion(
            name,
            vs(spec.medication),
            frozenset(spec.from_),
            dur(spec.lookback),
            registry.mme_table or None,
            dur(spec.started_within),
        )
    if isinstance(spec, ConditionSpec):
        return ConditionCriterion(name, vs(spec.code), spec.status, dur(spec.lookback))
    if isinstance(spec, ObservationSpec):
        number = NumberTest.compile(spec.value, params) if isinstance(spec.value, NumberFilter) else None
        value_set = vs(spec.value) if isinstance(spec.value, ValueSetRef) else None
        return ObservationCriterion(name, vs(spec.code), number, value_set, dur(spec.within), spec.latest)
    if isinstance(spec, ReviewSpec):
        return ReviewCriterion(
            name,
            frozenset(spec.kinds),
            vs(spec.code) if spec.code else None,
            frozenset(spec.by),
            frozenset(spec.roles),
            tuple(spec.targets),
            spec.after,
            dur(spec.within),
        )
    if isinstance(spec, CarePlanSpec):
        return CarePlanCriterion(name, frozenset(spec.status))
    if isinstance(spec, PatientSpec):
        return PatientCriterion(
            name,
            NumberTest.compile(spec.age, params) if spec.age else None,
            frozenset(spec.gender) if spec.gender else None,
        )
    if isinstance(spec, FindingSpec):
        return FindingCriterion(name, tuple(spec.rules))
    raise TypeError(f"unknown criterion kind {criterion.kind!r}")  # pragma: no cover
