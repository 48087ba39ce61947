"""Diagnostics: positioned, coded messages collected by loaders, validators, lint and test runners.

A diagnostic renders as one line, ``file:line:col: error CODE: message``, the format every
command of the CLI uses on stderr (see ``docs/cli.md``). Codes are stable: integrators and
authors search for them, so a code never changes meaning once released.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How bad a diagnostic is; ordered so that ``max()`` gives the worst."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected info, warning or error)") from None


@dataclass(frozen=True, slots=True, order=True)
class SourceLocation:
    """Where a problem is: a file, and when known a 1-based line and column."""

    file: str
    line: int | None = None
    col: int | None = None

    def render(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file}
        if self.line is not None:
            out["line"] = self.line
        if self.col is not None:
            out["col"] = self.col
        return out


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a rule pack, a rule test or a FHIR input."""

    code: str
    message: str
    severity: Severity = Severity.ERROR
    location: SourceLocation | None = None
    rule_id: str | None = None
    hint: str | None = None
    path: str | None = field(default=None)  # FHIR path or YAML path, for machines

    def render(self) -> str:
        where = f"{self.location.render()}: " if self.location else ""
        text = f"{where}{self.severity.label} {self.code}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity.label,
            "message": self.message,
        }
        if self.location is not None:
            out["location"] = self.location.to_json()
        if self.rule_id:
            out["rule"] = self.rule_id
        if self.hint:
            out["hint"] = self.hint
        if self.path:
            out["path"] = self.path
        return out

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Order by file, line, column, then code, so output is stable across runs."""

    def key(d: Diagnostic) -> tuple[str, int, int, str, str]:
        loc = d.location
        return (
            loc.file if loc else "",
            loc.line or 0 if loc else 0,
            loc.col or 0 if loc else 0,
            d.code,
            d.message,
        )

    return sorted(diagnostics, key=key)


def did_you_mean(word: str, candidates: Sequence[str] | Iterable[str]) -> str | None:
    """Return the closest candidate to a mistyped name, or None when nothing is close."""
    pool = sorted(set(candidates))
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    lowered = {c.lower(): c for c in pool}
    return lowered.get(word.lower())


def suggestion_hint(word: str, candidates: Iterable[str]) -> str | None:
    guess = did_you_mean(word, list(candidates))
    return f"did you mean {guess!r}?" if guess else None
