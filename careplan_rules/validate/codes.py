"""The stable codes of ``careplan-rules validate``: one code, one meaning, one severity.

Integrators filter and count these (``--ignore``, the JSON report), so a code never changes
meaning once released; the table in ``docs/cli.md`` is checked against this one by a test.
Families follow the checks: ``V0xx`` structure (fhir.resources), ``V1xx`` what the models
describe but do not enforce, ``V2xx`` bundle integrity, ``V3xx`` what the rules need.
Input errors (unreadable files, malformed JSON) keep the reader's ``CPR-F`` codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from careplan_rules.diagnostics import Diagnostic, Severity, SourceLocation


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    title: str


_TABLE = (
    # structure: fhir.resources' own validation, per problem
    Code("CPR-V001", Severity.ERROR, "invalid FHIR: unknown element, wrong type, bad value, missing required element"),
    Code("CPR-V002", Severity.ERROR, "resource type not defined in the FHIR release (unknown, or DSTU2/STU3-only)"),
    Code("CPR-V003", Severity.ERROR, "the data is another FHIR release (R4 vs R5) than --fhir-version says"),
    Code(
        "CPR-V004", Severity.ERROR, "the data is an older FHIR release (STU3, DSTU2) that careplan-rules does not read"
    ),
    Code("CPR-V005", Severity.ERROR, "the input mixes R4 and R5 shapes"),
    # what the models carry as metadata but do not enforce
    Code("CPR-V101", Severity.ERROR, "code outside its required binding (e.g. a status or intent value)"),
    Code("CPR-V102", Severity.ERROR, "reference to a resource type the element does not allow"),
    Code("CPR-V103", Severity.ERROR, 'boolean or number written as a JSON string (e.g. "true", "5")'),
    # bundle integrity
    Code("CPR-V201", Severity.WARNING, "reference does not resolve inside the input"),
    Code("CPR-V202", Severity.ERROR, "medication reference does not resolve: what was taken is unknown"),
    Code("CPR-V203", Severity.ERROR, "duplicate fullUrl"),
    Code("CPR-V204", Severity.ERROR, "duplicate resource type and id"),
    Code("CPR-V205", Severity.ERROR, "contained resource that nothing references (invariant dom-3)"),
    Code("CPR-V206", Severity.ERROR, "urn:uuid: / urn:oid: value that is not a UUID / OID"),
    Code("CPR-V207", Severity.WARNING, "subject/patient is a patient that is not in the input"),
    Code("CPR-V208", Severity.ERROR, "#id reference to a contained resource that does not exist"),
    Code("CPR-V209", Severity.ERROR, "fullUrl names another resource type or id than the resource has"),
    # what the rules need
    Code("CPR-V301", Severity.WARNING, "medication without any code or text"),
    Code("CPR-V302", Severity.WARNING, "medication record without status"),
    Code("CPR-V303", Severity.WARNING, "medication record without subject"),
    Code("CPR-V304", Severity.WARNING, "medication record without any date"),
    Code("CPR-V305", Severity.WARNING, "period whose end precedes its start (invariant per-1)"),
    Code("CPR-V306", Severity.WARNING, "date of a past event that lies in the future (relative to --now)"),
    Code("CPR-V307", Severity.WARNING, "coding with a code but no system"),
    Code("CPR-V308", Severity.INFO, "more than one patient in one bundle"),
)

CODES: dict[str, Code] = {c.code: c for c in _TABLE}


def diag(code: str, message: str, location: SourceLocation | None, path: str | None = None) -> Diagnostic:
    """A validation diagnostic with the severity its code always has.

    Args:
        code: a code from :data:`CODES`.
        message: one sentence, starting with the FHIR path when there is one.
        location: file (and NDJSON line) of the problem.
        path: the FHIR path, for machines.

    Raises:
        KeyError: for a code that is not in the table (a bug).
    """
    return Diagnostic(code, message, CODES[code].severity, location, path=path)
