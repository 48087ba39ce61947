"""Helpers shared by the normalisers: codeable concepts, dates, references, context."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.facts import CodingFact, TextField
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.references import ReferenceIndex
from careplan_rules.temporal import FhirInstant, try_parse_fhir_datetime
from careplan_rules.terminology.text import normalize_text


@dataclass(slots=True)
class Context:
    """What a normaliser needs besides the resource: the input's index and release."""

    index: ReferenceIndex
    version: str  # "R4" (read with R4B models) or "R5"
    source: str
    entry: Entry
    problems: list[Diagnostic] = field(default_factory=list)

    @property
    def r5(self) -> bool:
        return self.version == "R5"

    @property
    def ref(self) -> str:
        return self.index.ref_of(self.entry)

    def problem(self, code: str, message: str) -> None:
        self.problems.append(
            Diagnostic(
                code,
                f"{self.entry.path}: {message}",
                location=SourceLocation(self.source, self.entry.line),
                path=self.entry.path,
            )
        )


def text_field(path: str, text: Any) -> TextField | None:
    if not isinstance(text, str) or not text.strip():
        return None
    return TextField(path, text, normalize_text(text))


def codeable(cc: Any, path: str) -> tuple[tuple[CodingFact, ...], tuple[TextField, ...]]:
    """Codings and text of a CodeableConcept (tolerant of odd shapes: they were validated)."""
    if not isinstance(cc, dict):
        return (), ()
    codings: list[CodingFact] = []
    for i, c in enumerate(cc.get("coding") or []):
        if isinstance(c, dict):
            system, code, display = c.get("system"), c.get("code"), c.get("display")
            codings.append(
                CodingFact(
                    system if isinstance(system, str) else None,
                    str(code) if code is not None else None,
                    display if isinstance(display, str) else None,
                    f"{path}.coding[{i}]",
                )
            )
    text = cc.get("text")
    if isinstance(text, str) and text.strip():
        return tuple(codings), (TextField(f"{path}.text", text, normalize_text(text)),)
    return tuple(codings), ()


def codes_of(cc: Any) -> tuple[str, ...]:
    if not isinstance(cc, dict):
        return ()
    return tuple(str(c.get("code")) for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code"))


def status_code(value: Any) -> str | None:
    """A status that is a code (R4/R5 primitives) or a CodeableConcept (Condition statuses)."""
    if isinstance(value, str):
        return value
    codes = codes_of(value)
    return codes[0] if codes else None


def instant(value: Any, *, latest: bool = False) -> datetime | None:
    parsed = _parsed(value) if isinstance(value, str) else None
    if parsed is None:
        return None
    return parsed.latest if latest else parsed.earliest


@functools.lru_cache(maxsize=8192)  # a record repeats its dates, a population its days; results are immutable
def _parsed(text: str) -> FhirInstant | None:
    return try_parse_fhir_datetime(text)


def period_bounds(period: Any) -> tuple[datetime | None, datetime | None]:
    if not isinstance(period, dict):
        return None, None
    return instant(period.get("start")), instant(period.get("end"), latest=True)


def choice(resource: dict[str, Any], base: str) -> tuple[str | None, Any]:
    """The populated ``base[x]`` element: (suffix, value)."""
    for key, value in resource.items():
        if key.startswith(base) and key != base and key[len(base) : len(base) + 1].isupper():
            return key[len(base) :], value
    return None, None


def time_of(resource: dict[str, Any], base: str) -> tuple[datetime | None, datetime | None]:
    """Start and end of a ``base[x]`` that is a dateTime, Period, instant or Timing."""
    suffix, value = choice(resource, base)
    if suffix in ("DateTime", "Instant", "Date"):
        return instant(value), instant(value, latest=True)
    if suffix == "Period":
        return period_bounds(value)
    if suffix == "Timing" and isinstance(value, dict):
        events = [e for e in (instant(x) for x in value.get("event") or []) if e is not None]
        repeat = value.get("repeat")
        bstart, bend = period_bounds(repeat.get("boundsPeriod") if isinstance(repeat, dict) else None)
        return (min(events) if events else bstart), (max(events) if events else bend)
    return None, None


def notes(resource: dict[str, Any], base: str = "note") -> tuple[TextField, ...]:
    out = []
    for i, n in enumerate(resource.get(base) or []):
        if isinstance(n, dict):
            t = text_field(f"{base}[{i}].text", n.get("text"))
            if t is not None:
                out.append(t)
    return tuple(out)
