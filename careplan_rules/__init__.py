"""careplan-rules: declarative YAML rules over FHIR data → DetectedIssue, CarePlan, CDS Hooks cards.

The public API is what ``__all__`` lists; everything else may change between releases.
"""

from __future__ import annotations

from careplan_rules._version import __version__
from careplan_rules.api import Engine, EvaluationResults, bundled_rules_dir, load_packs
from careplan_rules.diagnostics import Diagnostic, Severity, SourceLocation
from careplan_rules.errors import (
    CarePlanRulesError,
    EvaluationError,
    FhirInputError,
    RuleLoadError,
    TerminologyError,
)
from careplan_rules.findings import Finding, PatientResult
from careplan_rules.loader.pack import Pack
from careplan_rules.loader.pack_loader import load_pack

__all__ = [
    "CarePlanRulesError",
    "Diagnostic",
    "Engine",
    "EvaluationError",
    "EvaluationResults",
    "FhirInputError",
    "Finding",
    "Pack",
    "PatientResult",
    "RuleLoadError",
    "Severity",
    "SourceLocation",
    "TerminologyError",
    "__version__",
    "bundled_rules_dir",
    "load_pack",
    "load_packs",
]
