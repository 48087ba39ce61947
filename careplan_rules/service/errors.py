"""Errors of the service, answered as FHIR ``OperationOutcome`` bodies on every non-2xx response.

CDS Hooks 2.0.1 leaves error bodies open; 3.0 (ballot) asks for an OperationOutcome, so
every error here is one: ``issue.severity``, ``issue.code`` (FHIR issue-type), ``details.text``
(one sentence for a person), ``diagnostics`` (for the integrator) and ``expression`` (where in
the request). Messages never quote patient data or tokens: they name fields, prefetch keys and
HTTP statuses, not values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# FHIR issue-type codes used here: invalid, required, value, structure, not-supported, security,
# login, not-found, too-long, processing, exception, timeout, incomplete, transient
STATUS_TEXT = {
    400: "the request is malformed",
    401: "authentication failed",
    404: "not found",
    405: "method not allowed",
    412: "data the rules need could not be obtained",
    413: "the request is too large",
    415: "the request must be JSON",
    500: "internal error",
}


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem, as an ``OperationOutcome.issue``."""

    code: str
    message: str
    expression: tuple[str, ...] = ()
    diagnostics: str | None = None
    severity: str = "error"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "details": {"text": self.message}}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class ServiceError(Exception):
    """An error answered with ``status`` and an OperationOutcome of ``issues``."""

    def __init__(self, status: int, issues: Sequence[Issue], headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.issues: tuple[Issue, ...] = tuple(issues) or (Issue("processing", STATUS_TEXT.get(status, "error")),)
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.issues[0].message)

    def __reduce__(self) -> tuple[Any, ...]:
        # crosses from an evaluation process to the service (pickle would call __init__ with the message)
        return (type(self), (self.status, self.issues, self.headers))

    @classmethod
    def single(
        cls, status: int, code: str, message: str, expression: Sequence[str] = (), diagnostics: str | None = None
    ) -> ServiceError:
        return cls(status, [Issue(code, message, tuple(expression), diagnostics)])


@dataclass(frozen=True, slots=True)
class Problems:
    """Collects request problems so one 400 names all of them, not just the first."""

    items: list[Issue] = field(default_factory=list)

    def add(self, code: str, message: str, *expression: str) -> None:
        self.items.append(Issue(code, message, tuple(expression)))

    def raise_if_any(self, status: int = 400) -> None:
        if self.items:
            raise ServiceError(status, self.items)


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """A FHIR R4/R5 ``OperationOutcome`` of the issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def unauthorized() -> ServiceError:
    """The one 401 every authentication failure gets: no detail that could help an attacker."""
    return ServiceError(
        401,
        [Issue("login", "authentication failed: a valid CDS Hooks client JWT is required")],
        {"WWW-Authenticate": 'Bearer realm="cds-services"'},
    )
