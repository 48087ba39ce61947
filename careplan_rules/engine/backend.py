"""The backend protocol: how a compiled rule set is evaluated against one patient's facts.

The default backend is pure Python (``backends/python.py``). An optional durable_rules
backend implements the same protocol; both must return identical outcomes for identical
input, which the differential tests check.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from careplan_rules.engine.compiler import RuleSet
from careplan_rules.facts import PatientRecord
from careplan_rules.findings import RuleOutcome


class Backend(Protocol):
    name: str

    def evaluate(
        self, ruleset: RuleSet, record: PatientRecord, now: datetime, *, trace: bool = False
    ) -> tuple[RuleOutcome, ...]:
        """Evaluate every rule of ``ruleset`` (in its order) for one patient.

        Must be a pure function of its arguments: no clock, no I/O, no shared mutable state.
        Raises:
            EvaluationError: when a rule cannot be evaluated; never an empty result instead.
        """
        ...
