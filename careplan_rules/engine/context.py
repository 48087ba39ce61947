"""Per-evaluation state: the patient's facts, ``now``, and memoised value-set matches.

One context serves every rule of one patient, so a value set used by several rules is
matched against each record once. Nothing here outlives the evaluation, which is why the
compiled rules themselves can stay immutable and be shared across threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from careplan_rules.facts import CodingFact, ConceptMatch, MedicationExposure, PatientRecord, TextField
from careplan_rules.findings import RuleOutcome
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
    _medication_cache: dict[tuple[str, str, str], MatchPair] = field(default_factory=dict)
    _code_cache: dict[tuple[str, str, str], MatchPair] = field(default_factory=dict)

    def medication_matches(self, vs: CompiledValueSet, exposure: MedicationExposure) -> MatchPair:
        key = (vs.id, exposure.ref, exposure.kind)  # one Observation may be a report and a lab result
        hit = self._medication_cache.get(key)
        if hit is None:
            hit = vs.match_medication(exposure.medication, exposure.notes)
            self._medication_cache[key] = hit
        return hit

    def code_matches(
        self, vs: CompiledValueSet, ref: str, slot: str, codings: tuple[CodingFact, ...], texts: tuple[TextField, ...]
    ) -> MatchPair:
        key = (vs.id, ref, slot)
        hit = self._code_cache.get(key)
        if hit is None:
            hit = vs.match_concept_codings(codings, texts)
            self._code_cache[key] = hit
        return hit

    @property
    def prior(self) -> Mapping[str, RuleOutcome]:
        return self.outcomes
