"""The exception tree of careplan-rules.

Everything the library raises on purpose derives from :class:`CarePlanRulesError`::

    CarePlanRulesError
    ├── RuleLoadError       a rule pack (YAML) is malformed or inconsistent
    ├── TerminologyError    a value set is unknown or unusable
    ├── FhirInputError      FHIR input cannot be read, parsed or validated
    └── EvaluationError     rules could not be evaluated for a patient

Each carries the :class:`~careplan_rules.diagnostics.Diagnostic` objects that explain it, so
callers can render ``file:line:col`` messages or serialise them. Errors are never swallowed
into an empty result: a rule that cannot be evaluated must not look like a rule that did not
fire.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from careplan_rules.diagnostics import Diagnostic, Severity

if TYPE_CHECKING:
    from careplan_rules.findings import PatientResult


class CarePlanRulesError(Exception):
    """Root of every error raised on purpose by careplan-rules."""

    default_code = "CPR-E000"

    def __init__(
        self,
        message: str,
        diagnostics: Iterable[Diagnostic] = (),
        results: Sequence[PatientResult] = (),
    ) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        if not self.diagnostics:
            self.diagnostics = (Diagnostic(code=self.default_code, message=message),)
        # every per-patient result of the call, successful ones included, when the error
        # happened during an evaluation (so callers that want partial output can have it)
        self.results: tuple[PatientResult, ...] = tuple(results)
        super().__init__(message)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class RuleLoadError(CarePlanRulesError):
    """A rule pack could not be loaded; ``diagnostics`` says where and why."""

    default_code = "CPR-E002"


class TerminologyError(CarePlanRulesError):
    """A value set is unknown, empty or unusable (never evaluated as an empty set)."""

    default_code = "CPR-E020"


class FhirInputError(CarePlanRulesError):
    """FHIR input could not be read, parsed or validated."""

    default_code = "CPR-F001"


class EvaluationError(CarePlanRulesError):
    """Rules could not be evaluated for one or more patients."""

    default_code = "CPR-X001"
