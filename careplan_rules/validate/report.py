"""Output of ``validate``: diagnostics as they come, then a summary; as text or as JSON.

Both reporters write each diagnostic the moment it arrives (the JSON one writes its array
incrementally), so a run over a large export neither holds every diagnostic in memory nor
stays silent until the end. The :class:`Tally` counts what was reported, per code, per
severity and per input, for the summary and the exit status.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from careplan_rules._version import __version__
from careplan_rules.diagnostics import Diagnostic, Severity
from careplan_rules.validate.codes import CODES
from careplan_rules.validate.runner import InputStats

_FILES_LISTED = 20


@dataclass(slots=True)
class Tally:
    """Counts of what was reported (ignored codes are counted apart)."""

    ignore: frozenset[str] = frozenset()
    by_code: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[Severity] = field(default_factory=Counter)
    by_file: dict[str, Counter[Severity]] = field(default_factory=dict)
    ignored: int = 0
    input_errors: int = 0  # unreadable or malformed input (CPR-F codes)

    def add(self, d: Diagnostic) -> bool:
        """Count a diagnostic; False when its code is ignored (and it must not be shown)."""
        if d.code in self.ignore:
            self.ignored += 1
            return False
        self.by_code[d.code] += 1
        self.by_severity[d.severity] += 1
        if d.code.startswith("CPR-F") and d.is_error:
            self.input_errors += 1
        name = d.location.file if d.location else ""
        self.by_file.setdefault(name, Counter())[d.severity] += 1
        return True

    @property
    def errors(self) -> int:
        return self.by_severity[Severity.ERROR]

    @property
    def warnings(self) -> int:
        return self.by_severity[Severity.WARNING]

    @property
    def information(self) -> int:
        return self.by_severity[Severity.INFO]


@dataclass(frozen=True, slots=True)
class Summary:
    inputs: tuple[InputStats, ...]
    tally: Tally
    seconds: float
    fail_on: str

    @property
    def resources(self) -> int:
        return sum(i.resources for i in self.inputs)

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.inputs)

    @property
    def valid(self) -> bool:
        """No errors (and no warnings when failing on warnings), and every input readable."""
        t = self.tally
        return t.errors == 0 and (self.fail_on != "warning" or t.warnings == 0)

    def to_json(self) -> dict[str, Any]:
        t = self.tally
        return {
            "valid": self.valid,
            "failOn": self.fail_on,
            "files": len(self.inputs),
            "unreadable": sum(1 for i in self.inputs if i.kind == "unreadable"),
            "resources": self.resources,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "errors": t.errors,
            "warnings": t.warnings,
            "information": t.information,
            "ignored": t.ignored,
            "byCode": {
                code: {"severity": _severity_of(code), "count": count} for code, count in sorted(t.by_code.items())
            },
            "inputs": [
                {
                    "source": i.source,
                    "kind": i.kind,
                    "fhirVersion": i.fhir_version or None,
                    "resources": i.resources,
                    "bytes": i.bytes,
                    "errors": t.by_file.get(i.source, Counter())[Severity.ERROR],
                    "warnings": t.by_file.get(i.source, Counter())[Severity.WARNING],
                    "information": t.by_file.get(i.source, Counter())[Severity.INFO],
                }
                for i in self.inputs
            ],
        }


def _severity_of(code: str) -> str:
    known = CODES.get(code)
    return known.severity.label if known else "error"


def _title_of(code: str) -> str:
    known = CODES.get(code)
    return known.title if known else "input cannot be read (see docs/cli.md, FHIR input codes)"


class _Writer:
    """Writes to a given stream, or to whatever ``sys.stdout`` is at the time of writing (a
    progress bar on the terminal swaps it for a proxy that prints above the bar)."""

    def __init__(self, out: TextIO | None) -> None:
        self._out = out

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    def _write(self, text: str) -> None:
        self.out.write(text)


class TextReporter(_Writer):
    """One line per diagnostic (``file[:line[:col]]: severity CODE: message``), then tables."""

    def start(self, meta: dict[str, Any]) -> None:
        """Nothing to write before the first diagnostic in text."""

    def diagnostic(self, d: Diagnostic) -> None:
        self._write(d.render() + "\n")

    def finish(self, summary: Summary) -> None:
        t = summary.tally
        console = Console(file=self.out, soft_wrap=False, highlight=False, width=120)
        if t.by_code or summary.inputs:
            console.print()
        mb = summary.bytes / 1e6
        verdict = "valid" if summary.valid else "INVALID"
        console.print(
            f"{verdict}: {len(summary.inputs)} file(s), {summary.resources:,} resource(s), {mb:,.1f} MB "
            f"in {summary.seconds:.1f} s; {t.errors:,} error(s), {t.warnings:,} warning(s), "
            f"{t.information:,} information" + (f", {t.ignored:,} ignored" if t.ignored else ""),
            markup=False,
        )
        if t.by_code:
            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            table.add_column("code")
            table.add_column("severity")
            table.add_column("count", justify="right")
            table.add_column("what")
            for code, count in sorted(t.by_code.items(), key=lambda kv: (-_rank(kv[0]), kv[0])):
                table.add_row(code, _severity_of(code), f"{count:,}", _title_of(code))
            console.print(table)
        with_problems = [i for i in summary.inputs if t.by_file.get(i.source)]
        if len(summary.inputs) > 1 and with_problems:
            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            table.add_column("file", overflow="fold")
            table.add_column("resources", justify="right")
            table.add_column("errors", justify="right")
            table.add_column("warnings", justify="right")
            table.add_column("info", justify="right")
            ranked = sorted(
                with_problems,
                key=lambda i: (-t.by_file[i.source][Severity.ERROR], -t.by_file[i.source][Severity.WARNING], i.source),
            )
            for i in ranked[:_FILES_LISTED]:
                c = t.by_file[i.source]
                table.add_row(
                    i.source,
                    f"{i.resources:,}",
                    str(c[Severity.ERROR]),
                    str(c[Severity.WARNING]),
                    str(c[Severity.INFO]),
                )
            if len(ranked) > _FILES_LISTED:
                table.add_row(f"… and {len(ranked) - _FILES_LISTED} more file(s) with problems", "", "", "", "")
            console.print(table)


def _rank(code: str) -> int:
    known = CODES.get(code)
    return int(known.severity) if known else int(Severity.ERROR)


class JsonReporter(_Writer):
    """``{"tool", "now", "fhirVersion", "checks", "diagnostics": [...], "summary"}``, written incrementally."""

    def __init__(self, out: TextIO | None) -> None:
        super().__init__(out)
        self._first = True

    def start(self, meta: dict[str, Any]) -> None:
        head = json.dumps(meta, ensure_ascii=False)[:-1] + ", " if meta else "{"
        self._write(head + '"diagnostics": [')

    def diagnostic(self, d: Diagnostic) -> None:
        self._write(("\n  " if self._first else ",\n  ") + json.dumps(d.to_json(), ensure_ascii=False))
        self._first = False

    def finish(self, summary: Summary) -> None:
        body = json.dumps(summary.to_json(), ensure_ascii=False, indent=2)
        self._write(("" if self._first else "\n") + '], "summary": ' + body + "}\n")


def tool_meta(now: str, fhir_version: str, checks: list[str]) -> dict[str, Any]:
    """The header of the JSON report."""
    return {
        "tool": {"name": "careplan-rules", "version": __version__, "command": "validate"},
        "now": now,
        "fhirVersion": fhir_version,
        "checks": ["structure", *checks],
    }
