"""Per-evaluation state: the patient's facts, ``now``, and memoised value-set matches.

One context serves every rule of one patient, so a value set used by several rules is
matched against each record once, and a criterion several rules share is evaluated once.
Nothing here outlives the evaluation but the pack's bounded memo of value-set matches (see
:mod:`careplan_rules.terminology.memo`), a cache of a pure function, which is why the
compiled rules themselves can stay immutable and be shared across threads.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from careplan_rules.facts import CodingFact, ConceptMatch, MedicationExposure, PatientRecord, TextField
from careplan_rules.findings import Match, Rejected, RuleOutcome
from careplan_rules.terminology.memo import ResultsByValueSet
from careplan_rules.terminology.registry import ValueSetRegistry
from careplan_rules.terminology.valueset import CompiledValueSet, Rejection

MatchPair = tuple[list[ConceptMatch], list[Rejection]]


@dataclass(slots=True)
class EvalContext:
    record: PatientRecord
    now: datetime
    registry: ValueSetRegistry
    trace: bool = False
    outcomes: dict[str, RuleOutcome] = field(default_factory=dict)
    _medication_cache: dict[tuple[str, str], ResultsByValueSet] = field(default_factory=dict)
    _code_cache: dict[tuple[str, str], ResultsByValueSet] = field(default_factory=dict)
    # several rules name the same criterion (kratom use in seven); its result over this
    # patient depends only on its specification, so it is computed once
    shared_results: dict[Hashable, tuple[tuple[Match, ...], tuple[Rejected, ...]]] = field(default_factory=dict)

    def medication_matches(self, vs: CompiledValueSet, exposure: MedicationExposure) -> MatchPair:
        """How the exposure's medication matches ``vs`` (shared lists: do not modify them)."""
        key = (exposure.ref, exposure.kind)  # one Observation may be a report and a lab result
        by_valueset = self._medication_cache.get(key)
        if by_valueset is None:
            by_valueset = self._medication_cache[key] = self.registry.memo.medication(
                exposure.medication, exposure.notes
            )
        hit = by_valueset.get(vs)
        if hit is None:
            hit = by_valueset[vs] = vs.match_medication(exposure.medication, exposure.notes)
        return hit

    def code_matches(
        self, vs: CompiledValueSet, ref: str, slot: str, codings: tuple[CodingFact, ...], texts: tuple[TextField, ...]
    ) -> MatchPair:
        """How a record's code (``slot``) matches ``vs`` (shared lists: do not modify them)."""
        key = (ref, slot)
        by_valueset = self._code_cache.get(key)
        if by_valueset is None:
            by_valueset = self._code_cache[key] = self.registry.memo.concept(codings, texts)
        hit = by_valueset.get(vs)
        if hit is None:
            hit = by_valueset[vs] = vs.match_concept_codings(codings, texts)
        return hit

    @property
    def prior(self) -> Mapping[str, RuleOutcome]:
        return self.outcomes
