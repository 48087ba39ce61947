"""What a screen writes: one :class:`FindingRow` per finding and one :class:`ErrorRow` per problem.

Both runners (local processes and Spark) produce exactly these rows, so their outputs can be
compared field by field. The column lists are the contract of ``findings.*`` and ``errors.ndjson``
(docs/screening.md); lists (``implicated``, ``sources``) are arrays in NDJSON and Parquet and
space-separated text in CSV.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FINDING_COLUMNS: tuple[str, ...] = (
    "patient",
    "rule",
    "rule_version",
    "pack",
    "pack_version",
    "severity",
    "indicator",
    "title",
    "summary",
    "implicated",
    "sources",
    "now",
)
LIST_COLUMNS = frozenset({"implicated", "sources"})

ERROR_COLUMNS: tuple[str, ...] = ("kind", "code", "message", "file", "line", "patient", "resource")

# what went wrong, coarsely, for the summary table
KIND_MALFORMED = "malformed"  # the line is not JSON / not a FHIR resource / not UTF-8
KIND_NO_PATIENT = "no-patient"  # a resource the rules read names no patient
KIND_EVALUATION = "evaluation"  # the patient could not be evaluated (invalid FHIR, rule error…)


@dataclass(frozen=True, slots=True)
class FindingRow:
    """One rule that fired for one patient, flattened for tables."""

    patient: str
    rule: str
    rule_version: str
    pack: str
    pack_version: str
    severity: str
    indicator: str
    title: str
    summary: str
    implicated: tuple[str, ...]
    sources: tuple[str, ...]  # "file:line" of each implicated resource found in the export
    now: str

    def to_dict(self) -> dict[str, Any]:
        return {c: list(v) if c in LIST_COLUMNS else v for c, v in zip(FINDING_COLUMNS, self._values(), strict=True)}

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in FINDING_COLUMNS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FindingRow:
        values: dict[str, Any] = {c: tuple(data[c]) if c in LIST_COLUMNS else data[c] for c in FINDING_COLUMNS}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One problem: a line that could not be read or placed, or a patient that could not be evaluated."""

    kind: str
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    patient: str | None = None
    resource: str | None = None  # "Type/id" when the resource could be read

    def to_dict(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in ERROR_COLUMNS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorRow:
        values: dict[str, Any] = {c: data.get(c) for c in ERROR_COLUMNS}
        return cls(**values)

    def render(self) -> str:
        """``file:line: error CODE: message`` (the CLI's one-line error shape)."""
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        who = f" [{self.patient}]" if self.patient else ""
        return f"{where + ': ' if where else ''}error {self.code}: {self.message}{who}"
