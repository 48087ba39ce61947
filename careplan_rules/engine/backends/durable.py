"""The optional durable_rules backend (extra ``careplan-rules[durable]``), cross-checked against python.

Select it with ``Engine(..., backend="durable")`` or ``--backend durable``. It returns the same
outcomes as the default :class:`~careplan_rules.engine.backends.python.PythonBackend`. The
criteria are computed by the same Python code (value sets, status and time windows, reviews,
counts, overlaps joins), and the durable_rules Rete engine decides which rule ``when``,
escalation and care-plan activity conditions hold (``durable_compile`` explains the encoding).
Then the same Python code builds the outcome. The differential tests compare the two backends
on every example and on randomised, shuffled patients.

durable-rules 2.0.28 is unmaintained and has reproduced defects (research/durable-rules.md §4).
``durable_driver`` implements the hardened embedding of §6, and ``durable_pool`` runs it in
worker processes when ``isolated=True``, so a crash fails one request instead of the server.
``docs/backends.md`` says when to choose which backend.
"""

from __future__ import annotations

import importlib
import platform
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from careplan_rules.engine.backends.durable_compile import (
    UNSUPPORTED_CODE,
    DurableProgram,
    RulePlan,
    compile_program,
    unsupported_reasons,
)
from careplan_rules.engine.backends.python import Evaluation, build_outcome, criterion_results
from careplan_rules.engine.compiler import CompiledRule, RuleSet
from careplan_rules.engine.expressions import evaluate_when
from careplan_rules.errors import EvaluationError, RuleLoadError
from careplan_rules.facts import PatientRecord
from careplan_rules.findings import CriterionResult, RuleOutcome

__all__ = ["UNSUPPORTED_CODE", "DurableBackend", "import_problem", "unsupported_reasons"]

INSTALL_HINT = "pip install 'careplan-rules[durable]'"


def import_problem() -> str | None:
    """Why durable_rules cannot be used in this interpreter, as one line; None when it can."""
    try:
        importlib.import_module("durable_rules_engine")
    except ImportError as exc:
        if sys.version_info >= (3, 13):
            why = f"durable-rules 2.0.28 does not import on Python 3.13 or later (this is {platform.python_version()})"
        else:
            why = f"durable-rules 2.0.28 is not installed or did not build ({exc})"
        return (
            f"the durable backend is not available: {why}; install it on CPython 3.11 or 3.12 with "
            f"{INSTALL_HINT} (compiles a C extension, needs a C compiler), or use the default python backend"
        )
    return None


class _Runner(Protocol):
    def fire(self, facts: Sequence[Mapping[str, Any]]) -> frozenset[str]: ...

    def close(self) -> None: ...


class DurableBackend:
    """Evaluate rules with the durable_rules Rete engine, behind the hardened driver.

    Args:
        isolated: run the C engine in worker processes (``durable_pool``), so a segfault or a
            hang fails that request with :class:`EvaluationError` and the worker is replaced.
            Use it in long-running services.
        workers: worker processes when isolated.
        timeout: seconds one evaluation step may take in a worker before it is killed.

    Raises:
        RuleLoadError: durable-rules cannot be imported here (one line naming the fix).
    """

    name = "durable"

    def __init__(self, *, isolated: bool = False, workers: int = 2, timeout: float = 30.0) -> None:
        problem = import_problem()
        if problem is not None:
            raise RuleLoadError(problem)
        self.isolated = isolated
        self._workers = workers
        self._timeout = timeout
        self._lock = threading.Lock()
        # one compiled program and runner per rule set (normally exactly one: the engine's)
        self._programs: dict[int, tuple[RuleSet, DurableProgram, _Runner]] = {}

    def prepare(self, ruleset: RuleSet) -> None:
        """Compile the rule set for durable_rules now, so unsupported rules fail at engine construction.

        The C ruleset itself is built lazily, once per process (per worker when isolated).

        Raises:
            RuleLoadError: naming each rule the backend cannot express, or a rule set too large.
        """
        self._program(ruleset)

    def evaluate(
        self, ruleset: RuleSet, record: PatientRecord, now: datetime, *, trace: bool = False
    ) -> tuple[RuleOutcome, ...]:
        """Evaluate every rule for one patient; same contract as the python backend.

        Rules run in layers: a layer holds rules that read only the findings of earlier layers, and
        each layer is one durable_rules session (fresh sid, deleted before the next starts).

        Raises:
            EvaluationError: a rule or the engine failed; never an empty or partial result.
            RuleLoadError: the rule set cannot run on this backend (when not prepared earlier).
        """
        program, runner = self._program(ruleset)
        run = Evaluation(ruleset, record, now, trace)
        for layer in program.layers:
            results: dict[int, dict[str, CriterionResult]] = {}
            facts: list[dict[str, Any]] = []
            for index in layer:
                rule, plan = ruleset.rules[index], program.plans[index]
                results[index] = run.guarded(rule, criterion_results, rule, run.context(rule))
                facts += run.guarded(rule, plan.atom_facts, program.bases[index], results[index], rule.params)
            try:
                fired = runner.fire(facts)
            except Exception as exc:  # whatever went wrong, this patient was not evaluated: say so
                detail = str(exc) if isinstance(exc, EvaluationError) else f"{type(exc).__name__}: {exc}"
                raise EvaluationError(f"the durable backend could not evaluate {record.patient_ref}: {detail}") from exc
            decided = self._decisions(program, layer, fired)
            for index in layer:
                rule, plan = ruleset.rules[index], program.plans[index]
                run.outcomes[rule.id] = run.guarded(rule, _outcome, rule, plan, results[index], decided, index)
        return run.result()

    def close(self) -> None:
        """Free the C rulesets and stop worker processes."""
        with self._lock:
            entries, self._programs = list(self._programs.values()), {}
        for _, _, runner in entries:
            runner.close()

    def _program(self, ruleset: RuleSet) -> tuple[DurableProgram, _Runner]:
        with self._lock:
            entry = self._programs.get(id(ruleset))
            if entry is None or entry[0] is not ruleset:
                program = compile_program(ruleset)
                runner: _Runner
                if self.isolated:
                    from careplan_rules.engine.backends.durable_pool import WorkerPool

                    runner = WorkerPool(program.rules_json, workers=self._workers, timeout=self._timeout)
                else:
                    from careplan_rules.engine.backends.durable_driver import DurableDriver

                    runner = DurableDriver(program.rules)
                entry = (ruleset, program, runner)
                self._programs[id(ruleset)] = entry
            return entry[1], entry[2]

    @staticmethod
    def _decisions(program: DurableProgram, layer: tuple[int, ...], fired: frozenset[str]) -> set[tuple[int, str]]:
        decided: set[tuple[int, str]] = set()
        for name in fired:
            found = program.names.get(name)
            if found is None or found[0] not in layer:
                raise EvaluationError(f"durable_rules fired {name!r}, which is not a rule of this evaluation step")
            decided.add(found)
        return decided


def _outcome(
    rule: CompiledRule,
    plan: RulePlan,
    results: dict[str, CriterionResult],
    decided: set[tuple[int, str]],
    index: int,
) -> RuleOutcome:
    if (index, "when") not in decided:
        return RuleOutcome(rule.id, False, results)
    # Which records an overlaps join implicates is computed by the shared Python code, exactly as
    # the python backend does (the engine decides only whether the rule fires).
    restricted = evaluate_when(rule.when, results, rule.params).restricted if plan.python_leaves else {}
    return build_outcome(
        rule,
        results,
        restricted,
        lambda i: (index, f"escalate.{i}") in decided,
        lambda i: (index, f"activity.{i}") in decided,
    )
